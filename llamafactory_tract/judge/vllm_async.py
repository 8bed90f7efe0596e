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

"""The judge on vLLM's asynchronous engine (``AsyncLLM``): ``tract serve``'s continuous batching.

The blocking vLLM backend grades a micro-batch with one ``LLM.generate`` call for all its CoTs and one
for all their scores, so a request that arrives meanwhile waits for the whole micro-batch, and every
row waits for the slowest CoT before any score is read. Here each CoT is its own request to
``AsyncLLM``, awaited alone: vLLM's scheduler adds it to the sequences in flight at its next step, and
the CoT's score read follows as soon as that CoT ends, on the prefix it left in the cache. The
requests are the blocking backend's (``vllm_backend``: the same prompt ids, sampling parameters, per-row
seeds, score contexts and score reads, the reads seeded here because they share engine steps with CoTs) and
the grade is ``grade_on_scale``'s, so on CPU in float32 a row gets the same CoT and grade either way (tested).

The engine is built before the server's event loop runs, as vLLM's own server builds it: ``AsyncLLM``
starts its output handler at the first request, in the loop that serves it.
"""

import asyncio
import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from llamafactory_tract.data.score_tokens import ScoreTokens
from llamafactory_tract.extras.logging import get_logger
from llamafactory_tract.judge.api import check_predictor, prompt_key
from llamafactory_tract.judge.backend import CoTSample, JudgePrompt, SamplingConfig
from llamafactory_tract.judge.config import JudgeConfig
from llamafactory_tract.judge.grade import Grade, grade_on_scale
from llamafactory_tract.judge.predictors import JudgePrediction, example_seed, expected_score
from llamafactory_tract.judge.score_context import ScoreContextBuilder
from llamafactory_tract.judge.vllm_backend import (
    FULL_VOCABULARY,
    SCORE_TOP_K,
    adapter_request,
    cot_sampling_params,
    engine_args,
    engine_contexts,
    load_tokenizer_and_adapter,
    read_cot,
    score_reserve,
    score_sampling_params,
    score_token_probs,
    score_tokens_by_id,
)

logger = get_logger(__name__)


class AsyncVllmBackend:
    """``VllmJudgeBackend``'s two requests per CoT, each awaited on its own by an ``AsyncLLM``."""

    def __init__(self, engine: Any, contexts: ScoreContextBuilder, lora_request: Any = None) -> None:
        from vllm.platforms import current_platform

        self.engine = engine
        self.contexts = contexts
        self.lora_request = lora_request
        self.stop_token_ids = contexts.template.get_stop_token_ids(contexts.tokenizer)
        self.max_model_len = engine.model_config.max_model_len
        self.top_k = min(SCORE_TOP_K, engine.model_config.get_vocab_size())
        self.score_by_id = score_tokens_by_id(current_platform)
        self.reserve = score_reserve(contexts.tokenizer, contexts.delimiter)
        self._request_ids = itertools.count()

    @classmethod
    def from_config(cls, config: JudgeConfig, with_cot: bool) -> "AsyncVllmBackend":
        """The blocking backend's tokenizer, template, adapter and engine settings, on an ``AsyncLLM``."""
        from vllm import AsyncEngineArgs, AsyncLLMEngine

        tokenizer, template, adapter = load_tokenizer_and_adapter(config)
        args = engine_args(config, adapter)
        logger.info_rank0(f"Starting vLLM's asynchronous engine for the judge: {args}")
        # Stats off, as ``LLM`` has them: nothing reads them, and they cost time at every step.
        engine = AsyncLLMEngine.from_engine_args(AsyncEngineArgs(**args, disable_log_stats=True))
        contexts = engine_contexts(config, with_cot, tokenizer, template, engine.model_config.max_model_len)
        return cls(engine, contexts, adapter_request(adapter))

    @property
    def score_tokens(self) -> ScoreTokens:
        return self.contexts.score_tokens

    async def sample_cot(self, prompt: JudgePrompt, sampling: SamplingConfig, seed: int) -> CoTSample:
        """One CoT, then the score-token probabilities after it."""
        ids = self.contexts.prompt_ids(prompt)
        room = self.max_model_len - self.reserve - len(ids)
        completion = await self._generate(
            ids, cot_sampling_params(sampling, seed, room, self.contexts, self.stop_token_ids)
        )
        sample = read_cot(completion, self.contexts, self.stop_token_ids)
        sample.score_probs = await self.score_cot(prompt, sample.cot, seed)
        return sample

    async def score_cot(self, prompt: JudgePrompt, cot: str, seed: int) -> list[float]:
        """p(score token | training-style context) for every score token: by id or top K, else the whole vocabulary.

        The reads are seeded (``score_sampling_params``) so that they never change the draws of the CoTs beside them.
        """
        context = self.contexts.score_context(prompt, cot, max_len=self.max_model_len - 1)
        ids = list(self.score_tokens.token_ids)
        read = await self._generate(context, score_sampling_params(ids, self.top_k, self.score_by_id, seed))
        probs = score_token_probs(read, ids)
        if None in probs:
            read = await self._generate(context, score_sampling_params(ids, FULL_VOCABULARY, False, seed))
            probs = score_token_probs(read, ids)
        return probs

    def engine_dead(self) -> bool:
        """The engine core process has exited, or the engine's output handler failed: no request will finish."""
        return self.engine.errored

    def close(self) -> None:
        """Shut the engine's processes down now (they would otherwise hold device memory until exit)."""
        self.engine.shutdown()

    async def _generate(self, prompt_ids: list[int], params: Any) -> Any:
        """The finished completion of one request (only the final output is sent back, as ``LLM`` has it)."""
        from vllm import TokensPrompt
        from vllm.sampling_params import RequestOutputKind

        params.output_kind = RequestOutputKind.FINAL_ONLY
        request_id = f"tract-judge-{next(self._request_ids)}"
        outputs = self.engine.generate(
            TokensPrompt(prompt_token_ids=prompt_ids), params, request_id, lora_request=self.lora_request
        )
        async for output in outputs:
            final = output
        return final.outputs[0]


class AsyncVllmJudge:
    """``TractJudge``'s grades, each row graded as soon as it is given, through an ``AsyncVllmBackend``."""

    def __init__(self, backend: AsyncVllmBackend, config: JudgeConfig) -> None:
        check_predictor(config)
        self.backend = backend
        self.config = config
        self.sampling = config.sampling_config()
        self.values = backend.score_tokens.numeric_values
        self.literals = list(backend.score_tokens.score_format.values)

    @classmethod
    def from_config(cls, config: JudgeConfig) -> "AsyncVllmJudge":
        check_predictor(config)
        return cls(AsyncVllmBackend.from_config(config, with_cot=config.uses_cot), config)

    def close(self) -> None:
        self.backend.close()

    def judge_prompt(self, prompt: str) -> str:
        return self.config.judge_prompt(prompt)

    async def grade_prompts(
        self, prompts: Sequence[str], n_cot: int | None = None, seed: int | None = None
    ) -> list[Grade]:
        """Grade ready judge prompts, each row on its own; ``n_cot``/``seed`` default to the config's."""
        n_cot = self.config.n_cot if n_cot is None else n_cot
        seed = self.config.seed if seed is None else seed
        if n_cot < 1:
            raise ValueError(f"`n_cot` must be >= 1, got {n_cot}.")
        return list(await asyncio.gather(*(self._grade(prompt, n_cot, seed) for prompt in prompts)))

    async def _grade(self, prompt: str, n_cot: int, seed: int) -> Grade:
        """``JudgePredictor``'s prediction for one row (its seeds: one per CoT, from the row's key), on the scale."""
        key = prompt_key(prompt)
        judge_prompt = JudgePrompt.from_instruction(self.judge_prompt(prompt))
        if self.config.uses_cot:
            draws = [
                self.backend.sample_cot(judge_prompt, self.sampling, example_seed(seed, key, d)) for d in range(n_cot)
            ]
            samples = list(await asyncio.gather(*draws))
            probs = [sample.score_probs for sample in samples]
        else:
            samples, probs = [], [await self.backend.score_cot(judge_prompt, "", example_seed(seed, key))]
        cot_scores = [expected_score(row, self.values, self.config.renormalize_scores) for row in probs]
        prediction = JudgePrediction(
            score=float(np.mean(cot_scores)),
            cot_scores=cot_scores,
            score_probs=[dict(zip(self.literals, row, strict=True)) for row in probs],
            cots=[sample.cot for sample in samples],
            closed_by=[sample.closed_by for sample in samples],
            generated_tokens=[sample.generated_tokens for sample in samples],
        )
        truncated = self.backend.contexts.was_shortened(judge_prompt)
        return grade_on_scale(prediction, self.values, key, self.config.min_score_mass, truncated)


class ContinuousGrader:
    """``tract serve``'s grader on an ``AsyncVllmJudge``, in the micro-batcher's interface but with no batches.

    Each request is graded from the moment it arrives; vLLM's scheduler batches the sequences of every
    request in flight, step by step. ``batches`` counts requests, each graded as its own group of rows.
    """

    def __init__(self, judge: AsyncVllmJudge) -> None:
        self.judge = judge
        self.pending_rows = 0
        self.batches = 0
        self._running: set[asyncio.Task] = set()
        self._failure: Exception | None = None

    async def start(self) -> None:
        """Nothing to start: the engine runs from the judge's construction."""

    async def stop(self) -> None:
        """Nothing to stop: the requests under way end with the server's graceful shutdown."""

    async def submit(self, prompts: list[str], n_cot: int, seed: int) -> list[Grade]:
        task = asyncio.ensure_future(self.judge.grade_prompts(prompts, n_cot, seed))
        self._running.add(task)
        self.pending_rows += len(prompts)
        self.batches += 1
        try:
            return await task
        except asyncio.CancelledError:
            if self._failure is None:
                raise
            raise self._failure from None
        finally:
            self._running.discard(task)
            self.pending_rows -= len(prompts)

    def fail_all(self, error: Exception) -> None:
        """Fail every request under way with ``error`` (the engine died): their vLLM requests are cancelled."""
        self._failure = error
        for task in self._running:
            task.cancel()
