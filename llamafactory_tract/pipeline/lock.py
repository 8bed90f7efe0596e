# Copyright 2026 the llamafactory-tract authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""One pipeline per folder: lock files beside the run folder and every step output, with stale-lock detection.

A lock is a ``<folder>.lock`` file created exclusively, holding the owner's pid, its start time, host
and the process group of the step it is running. A second pipeline stops with a message naming the
owner. A lock whose owner and step child are both gone (a crash, a SIGKILL) is stale and taken over
with a warning; the start time guards against a recycled pid.
"""

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from llamafactory_tract.extras.errors import TractUserError
from llamafactory_tract.extras.logging import get_logger

logger = get_logger(__name__)

LOCK_SUFFIX = ".lock"
BEING_WRITTEN_S = 10.0  # an unreadable lock younger than this is being written, not stale


class PipelineLockedError(TractUserError):
    """Another live pipeline holds a folder this one would write."""


def lock_path(folder: Path) -> Path:
    folder = Path(folder).resolve()
    return folder.with_name(folder.name + LOCK_SUFFIX)


def _started(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _group_alive(pgid: int | None) -> bool:
    if not pgid:
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owner_alive(owner: dict[str, Any]) -> bool:
    """The recorded pipeline (same pid and start time) or its step's process group still runs."""
    if owner.get("host") != socket.gethostname():
        return True  # cannot be checked from here: never taken over silently
    started = _started(int(owner.get("pid", 0)))
    pipeline_alive = started is not None and abs(started - float(owner.get("pid_started") or 0)) < 1.0
    return pipeline_alive or _group_alive(owner.get("child_pgid"))


class RunLock:
    """Exclusive locks on a set of folders for one pipeline process (a context manager)."""

    def __init__(self, folders: list[Path]) -> None:
        self.paths = sorted({lock_path(folder) for folder in folders})
        self.owner = {
            "pid": os.getpid(),
            "pid_started": _started(os.getpid()),
            "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join(sys.argv),
            "child_pgid": None,
        }
        self.held: list[Path] = []

    def __enter__(self) -> "RunLock":
        try:
            for path in self.paths:
                self._acquire(path)
        except BaseException:
            self.release()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def _acquire(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                owner = _read(path)
                if owner is None and _age(path) < BEING_WRITTEN_S:
                    raise PipelineLockedError(f"{path} is being taken by another tract pipeline right now.") from None
                if owner is not None and owner_alive(owner):
                    raise PipelineLockedError(
                        f"{path.with_suffix('')} is in use by another tract pipeline (pid {owner.get('pid')} on "
                        f"{owner.get('host')}, since {owner.get('since')}: {owner.get('command')}). Wait for it to "
                        f"finish; if that process is gone (another machine, say), remove {path}."
                    ) from None
                logger.warning_rank0(f"Removing the stale lock {path} of a pipeline that no longer runs: {owner}.")
                path.unlink(missing_ok=True)
                continue
            with os.fdopen(descriptor, "w") as handle:
                json.dump(self.owner, handle)
            self.held.append(path)
            return
        raise PipelineLockedError(f"Could not lock {path}: another pipeline took it at the same moment.")

    def set_child(self, pgid: int | None) -> None:
        """Record the running step's process group, so the lock stays live while it runs (even orphaned)."""
        self.owner["child_pgid"] = pgid
        for path in self.held:
            partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            partial.write_text(json.dumps(self.owner))
            os.replace(partial, path)

    def release(self) -> None:
        for path in self.held:
            owner = _read(path)
            if owner is not None and owner.get("pid") == os.getpid():
                path.unlink(missing_ok=True)
        self.held = []


def _age(path: Path) -> float:
    """Seconds since ``path`` was written (infinite if it is gone: released in the meantime)."""
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return float("inf")


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
