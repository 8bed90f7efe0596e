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

"""A micro-batching queue: requests that arrive together are graded in one call to the model.

One worker task owns the model. It takes the first waiting request, then keeps collecting requests
for up to ``max_wait_s`` or until ``max_rows`` rows are gathered, and grades them all at once in the
batcher's own thread (the event loop keeps accepting requests meanwhile; they form the next batch).
Not asyncio's default executor: the event loop waits for that one at exit, and a call blocked on a
dead engine would never let the server exit. Requests with different ``(n_cot, seed)`` in one
micro-batch are graded as separate calls. A row's random draws depend only on (seed, prompt, CoT
index), so its grade does not depend on which requests it shared a batch with wherever the logits do
not either: on CPU in float32, and on a GPU with ``backend: vllm`` and ``vllm_batch_invariant: true``
(see ``judge/api.py``). With the vLLM backend each micro-batch is one ``LLM.generate`` call, inside
which vLLM schedules the sequences continuously.
"""

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import groupby

from llamafactory_tract.extras.logging import get_logger
from llamafactory_tract.judge.grade import Grade

logger = get_logger(__name__)

GradeFunction = Callable[[list[str], int, int], list[Grade]]


@dataclass
class _Job:
    prompts: list[str]
    n_cot: int
    seed: int
    future: asyncio.Future = field(repr=False)


class MicroBatcher:
    def __init__(self, grade: GradeFunction, max_rows: int, max_wait_s: float) -> None:
        self.grade = grade
        self.max_rows = max_rows
        self.max_wait_s = max_wait_s
        self.pending_rows = 0
        self.batches = 0
        self._queue: asyncio.Queue[_Job] | None = None
        self._worker: asyncio.Task | None = None
        self._grading: list[_Job] = []
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tract-judge-grade")

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._run(), name="tract-judge-batcher")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, prompts: list[str], n_cot: int, seed: int) -> list[Grade]:
        if self._queue is None:
            raise RuntimeError("The batcher is not started.")
        future = asyncio.get_running_loop().create_future()
        self.pending_rows += len(prompts)
        await self._queue.put(_Job(prompts, n_cot, seed, future))
        return await future

    def fail_all(self, error: Exception) -> None:
        """Fail every waiting and running request now: the model will answer none of them (its engine died)."""
        while self._queue is not None and not self._queue.empty():
            job = self._queue.get_nowait()
            self.pending_rows -= len(job.prompts)
            _settle(job, error=error)
        for job in self._grading:  # the grading thread may never return from a dead engine
            _settle(job, error=error)

    async def _run(self) -> None:
        while True:
            jobs = await self._collect()
            self.batches += 1
            for (n_cot, seed), group in groupby(sorted(jobs, key=_settings), key=_settings):
                await self._grade_group(list(group), n_cot, seed)

    async def _collect(self) -> list[_Job]:
        """The first waiting job plus whatever arrives within ``max_wait_s``, up to ``max_rows`` rows."""
        jobs = [await self._queue.get()]
        rows = len(jobs[0].prompts)
        deadline = asyncio.get_running_loop().time() + self.max_wait_s
        while rows < self.max_rows:
            try:
                job = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            jobs.append(job)
            rows += len(job.prompts)
        return jobs

    async def _grade_group(self, jobs: list[_Job], n_cot: int, seed: int) -> None:
        prompts = [prompt for job in jobs for prompt in job.prompts]
        self._grading = jobs
        try:
            grades = await asyncio.get_running_loop().run_in_executor(self._executor, self.grade, prompts, n_cot, seed)
        except Exception as error:  # the model failed: every waiting request gets the error, the server lives on
            logger.exception("Grading a batch failed")
            for job in jobs:
                _settle(job, error=error)
        else:
            start = 0
            for job in jobs:
                _settle(job, result=grades[start : start + len(job.prompts)])
                start += len(job.prompts)
        finally:
            self._grading = []
            self.pending_rows -= len(prompts)


def _settings(job: _Job) -> tuple[int, int]:
    return job.n_cot, job.seed


def _settle(job: _Job, result: list[Grade] | None = None, error: Exception | None = None) -> None:
    """Resolve a job's future unless its client has gone (then the future is already cancelled)."""
    if job.future.done():
        return
    if error is not None:
        job.future.set_exception(error)
    else:
        job.future.set_result(result)
