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

"""Each pipeline step runs as a child process that lives and dies with the pipeline.

Running every step (training, D_self generation, evaluation) in its own process means its engine
and device memory are released before the next step starts: a vLLM engine or a model on the GPU is
gone when the process exits. The child gets its own process group, so stopping the pipeline
(Ctrl-C, SIGTERM, an error) terminates the whole group, and on Linux it is also told to stop if the
pipeline dies without cleaning up (SIGKILL).
"""

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from llamafactory_tract.extras.errors import TractUserError
from llamafactory_tract.extras.logging import get_logger

logger = get_logger(__name__)

TERMINATE_GRACE_S = 30.0
PR_SET_PDEATHSIG = 1


class PipelineStepError(TractUserError):
    """A step's child process failed; its own output above says why."""


class PipelineTerminated(KeyboardInterrupt):
    """The pipeline received SIGTERM; raised so that children are stopped and locks released."""


@contextmanager
def terminate_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into an exception for the duration (main thread only), so cleanup code runs."""

    def handler(signum: int, frame: object) -> None:
        raise PipelineTerminated(f"received signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _die_with_parent(parent: int) -> Callable[[], None]:
    """A ``preexec_fn`` asking Linux to send SIGTERM to the child when the pipeline dies (no-op elsewhere)."""

    def set_death_signal() -> None:
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        except (OSError, AttributeError):
            return
        if os.getppid() != parent:  # the pipeline died before prctl took effect
            os._exit(1)

    return set_death_signal


def venv_env() -> dict[str, str]:
    """The environment with this interpreter's ``bin/`` first on PATH (torchrun is called by name)."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def run_child(name: str, command: list[str], on_start: Callable[[int], None] | None = None) -> int:
    """Run ``command`` in its own process group; stop the group if the pipeline is interrupted. Returns its pid."""
    logger.info_rank0(f"[{name}] {' '.join(command)}")
    process = subprocess.Popen(
        command,
        env=venv_env(),
        start_new_session=True,
        preexec_fn=_die_with_parent(os.getpid()) if sys.platform.startswith("linux") else None,
    )
    try:
        if on_start is not None:
            on_start(process.pid)
        returncode = process.wait()
    except BaseException:
        stop_group(name, process)
        raise
    if returncode != 0:
        raise PipelineStepError(f"[{name}] `{' '.join(command)}` exited with status {returncode} (see its output).")
    return process.pid


def stop_group(name: str, process: subprocess.Popen) -> None:
    """SIGTERM to the child's process group; SIGKILL to whatever of it is left after a grace period."""
    logger.warning_rank0(f"[{name}] stopping the step (process group {process.pid}).")
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=TERMINATE_GRACE_S)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    process.wait()
