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

"""A ``tract`` command stopped by SIGTERM or SIGINT ends every process it started, then exits.

Python's default SIGTERM action ends the interpreter at once: no ``finally`` runs, so a vLLM engine's
processes (``VLLM::EngineCore``, ``VLLM::Worker``) are never shut down and live on, re-parented to init
and holding their memory. uvicorn (``tract serve``) catches SIGTERM to shut down gracefully, then raises
it again with the handler it found, which was that default. ``stop_on_sigterm`` makes SIGTERM raise
``Terminated`` (a ``KeyboardInterrupt``, like SIGINT) so that every ``finally`` and ``close()`` on the way
out runs; ``end_new_children`` then ends whatever the command started and left running.
"""

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psutil

CHILD_GRACE_S = 10.0
"""How long children get to exit after SIGTERM before they are killed."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that cleanup code runs."""


@contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """For the duration (main thread only), SIGTERM raises ``Terminated``; the previous handler is restored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Terminated(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def descendants() -> set[int]:
    """Pids of this process's children, grandchildren, ..."""
    return {child.pid for child in psutil.Process().children(recursive=True)}


def end_new_children(before: set[int]) -> list[int]:
    """SIGTERM, then after a grace period SIGKILL, the descendants that are not in ``before``; their pids.

    multiprocessing's resource tracker and fork server are left alone: they ignore SIGTERM, exit with this
    process, and the tracker unlinks the shared memory it tracks (vLLM's queues) as it does.
    """
    spared = before | _multiprocessing_helpers()
    started = [child for child in psutil.Process().children(recursive=True) if child.pid not in spared]
    for child in started:
        try:
            child.terminate()
        except psutil.NoSuchProcess:
            continue
    _, alive = psutil.wait_procs(started, timeout=CHILD_GRACE_S)
    for child in alive:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(alive, timeout=CHILD_GRACE_S)
    return [child.pid for child in started]


def _multiprocessing_helpers() -> set[int]:
    from multiprocessing import forkserver, resource_tracker

    helpers = (
        getattr(resource_tracker._resource_tracker, "_pid", None),
        getattr(forkserver._forkserver, "_forkserver_pid", None),
    )
    return {pid for pid in helpers if pid}
