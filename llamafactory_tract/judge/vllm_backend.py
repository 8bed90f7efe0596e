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

"""The vLLM backend: vLLM's engine called directly; tokenizer, template and score contexts from LLaMA-Factory.

CoT step: one request per CoT, seeded per row, with the paper's sampling parameters, stopped at the
delimiter or a CoT-end marker. Score step: the exact full-vocabulary probability of every score
token after the training-style context ``prompt + <cot> <delimiter>`` (re-encoded, see
``score_context``). It is a second request per CoT for one token with ``logprobs=K``: vLLM returns
the top K of the log-softmax of the raw logits (``logprobs_mode="raw_logprobs"``: in float32, before
repetition penalty, temperature and top-p), and the request computes only the part of the context
that the prefix cache does not hold from the CoT just sampled (its tail after the last full KV
block). The steps cannot be one request: the stop is found on decoded text, and the score position
follows the re-encoded delimiter, not the sampled ids. A row whose score tokens are not all in the
top K (a judge that gives the scores little mass) is asked again for the whole vocabulary
(``logprobs=-1``), on the now fully cached context. Not used: ``prompt_logprobs`` (skips the prefix
cache, and crashes a LoRA-enabled engine on CPU) and ``logprob_token_ids`` (its Triton kernel kills
the engine on CPU). Prompts are passed as token ids; a LoRA adapter is served unmerged (``LoRARequest``).
"""

import json
import math
from pathlib import Path
from typing import Any

from llamafactory.data import get_template_and_fix_tokenizer
from llamafactory.model import load_tokenizer

from llamafactory_tract.eval.config import EvalConfig, EvalConfigError
from llamafactory_tract.extras.logging import get_logger
from llamafactory_tract.judge.backend import (
    CoTSample,
    JudgeBackend,
    JudgePrompt,
    SamplingConfig,
    build_contexts,
    llamafactory_args,
)
from llamafactory_tract.judge.score_context import CLOSED_BY_EOS, CLOSED_BY_LENGTH, ScoreContextBuilder

logger = get_logger(__name__)

VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
SCORE_TOP_K = 20
"""Raw logprobs read at the score position; a row whose score tokens are not all among them is read in full."""
FULL_VOCABULARY = -1
"""``logprobs=-1``: every token's logprob (allowed by ``max_logprobs=-1`` on the engine)."""
SCORE_CONTEXT_SLACK = 8
"""Tokens kept free beyond the delimiter for gap tokens and a CoT that re-encodes a little longer than sampled."""


class VllmConfigError(EvalConfigError):
    """The vLLM settings cannot give exact scores or leave no room for prompts; the message says what to change."""


class VllmJudgeBackend(JudgeBackend):
    def __init__(self, engine: Any, contexts: ScoreContextBuilder, lora_request: Any = None) -> None:
        super().__init__(contexts)
        self.engine = engine
        self.lora_request = lora_request
        self.stop_token_ids = contexts.template.get_stop_token_ids(contexts.tokenizer)
        model_config = engine.llm_engine.model_config
        self.max_model_len = model_config.max_model_len
        self.top_k = min(SCORE_TOP_K, model_config.get_vocab_size())
        self.reserve = score_reserve(contexts.tokenizer, contexts.delimiter)
        self.forward_tokens = 0
        """Positions the engine computed (prefix-cache hits excluded), counted as the transformers benchmark counts."""
        self.exact_fallbacks = 0
        """Contexts with a score token outside the top K, read again over the full vocabulary."""

    @classmethod
    def from_config(cls, config: EvalConfig, with_cot: bool, engine: Any = None) -> "VllmJudgeBackend":
        """Tokenizer and template from LLaMA-Factory; the engine from ``build_engine`` unless one is given."""
        from vllm.lora.request import LoRARequest

        model_args, data_args, _ = llamafactory_args(config)
        tokenizer = load_tokenizer(model_args)["tokenizer"]
        template = get_template_and_fix_tokenizer(tokenizer, data_args)
        adapters = model_args.adapter_name_or_path or []
        if len(adapters) > 1:
            raise VllmConfigError(f"backend: vllm serves one LoRA adapter; got {adapters} (merge them first).")
        engine = engine if engine is not None else build_engine(config, adapters[0] if adapters else None)
        max_model_len = engine.llm_engine.model_config.max_model_len
        max_new_tokens = config.max_new_tokens if with_cot else 0
        max_prompt_len = max_model_len - max_new_tokens - score_reserve(tokenizer, config.score_delimiter)
        if config.max_prompt_len is None and max_prompt_len < 1:
            raise VllmConfigError(
                f"vllm_maxlen={max_model_len} leaves no room for a prompt after max_new_tokens={max_new_tokens} "
                f"and the score context; raise `vllm_maxlen` or lower `max_new_tokens`."
            )
        lora_request = LoRARequest("judge", 1, adapters[0]) if adapters else None
        contexts = build_contexts(tokenizer, template, config, with_cot, max_prompt_len)
        return cls(engine, contexts, lora_request)

    def sample_cots(
        self, prompts: list[JudgePrompt], sampling: SamplingConfig, seeds: list[int], with_scores: bool = True
    ) -> list[CoTSample]:
        from vllm import SamplingParams, TokensPrompt

        prompt_ids = [self.contexts.prompt_ids(prompt) for prompt in prompts]
        params = [
            SamplingParams(
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                repetition_penalty=sampling.repetition_penalty,
                max_tokens=max(1, min(sampling.max_new_tokens, self.max_model_len - len(ids) - self.reserve)),
                stop=list(self.contexts.stop_texts),
                include_stop_str_in_output=True,
                stop_token_ids=self.stop_token_ids,
                seed=seed,
            )
            for ids, seed in zip(prompt_ids, seeds, strict=True)
        ]
        requests = [TokensPrompt(prompt_token_ids=ids) for ids in prompt_ids]
        outputs = self._generate(requests, params)
        samples = []
        for output in outputs:
            completion = output.outputs[0]
            generated = list(completion.token_ids)
            self.forward_tokens += max(len(generated) - 1, 0)
            if generated and generated[-1] in self.stop_token_ids:
                generated.pop()  # counted like the transformers backend: the tokens before end-of-turn
            default = CLOSED_BY_LENGTH if completion.finish_reason == "length" else CLOSED_BY_EOS
            cot, closed_by = self.contexts.split_generated(completion.text, default)
            samples.append(CoTSample(cot=cot, closed_by=closed_by, generated_tokens=len(generated)))
        if with_scores:
            probs = self.score_cots(prompts, [sample.cot for sample in samples])
            for sample, sample_probs in zip(samples, probs, strict=True):
                sample.score_probs = sample_probs
        return samples

    def score_cots(self, prompts: list[JudgePrompt], cots: list[str]) -> list[list[float]]:
        contexts = [self._score_context(prompt, cot) for prompt, cot in zip(prompts, cots, strict=True)]
        return self._score_contexts(contexts)

    def close(self) -> None:
        """Shut the engine's processes down now (they would otherwise hold device memory until exit)."""
        self.engine.llm_engine.engine_core.shutdown()

    def _score_context(self, prompt: JudgePrompt, cot: str) -> list[int]:
        """The training-style context, shortened if needed so that context + the score token fits the engine."""
        return self.contexts.score_context(prompt, cot, max_len=self.max_model_len - 1)

    def _score_contexts(self, contexts: list[list[int]]) -> list[list[float]]:
        """p(score token | context) for every score token: the top K, or the whole vocabulary for rows that need it."""
        probs = self._next_token_probs(contexts, self.top_k)
        incomplete = [row for row, values in enumerate(probs) if None in values]
        if incomplete:
            self.exact_fallbacks += len(incomplete)
            exact = self._next_token_probs([contexts[row] for row in incomplete], FULL_VOCABULARY)
            for row, values in zip(incomplete, exact, strict=True):
                probs[row] = values
        return probs

    def _next_token_probs(self, contexts: list[list[int]], k: int) -> list[list[float | None]]:
        """Score-token probabilities among the top ``k`` raw logprobs after each context (None outside them)."""
        from vllm import SamplingParams, TokensPrompt

        params = SamplingParams(max_tokens=1, temperature=0.0, logprobs=k, detokenize=False, flat_logprobs=True)
        outputs = self._generate([TokensPrompt(prompt_token_ids=context) for context in contexts], params)
        probs = []
        for output in outputs:
            flat = output.outputs[0].logprobs  # one position: the token after the context
            top = dict(zip(flat.token_ids, flat.logprobs, strict=True))
            probs.append([math.exp(top[token]) if token in top else None for token in self.score_tokens.token_ids])
        return probs

    def _generate(self, requests: list[Any], params: Any) -> list[Any]:
        """``LLM.generate`` with the adapter; adds the positions computed (prompt minus prefix-cache hits)."""
        outputs = self.engine.generate(requests, params, lora_request=self.lora_request, use_tqdm=False)
        for output in outputs:
            self.forward_tokens += len(output.prompt_token_ids) - (output.num_cached_tokens or 0)
        return outputs


def build_engine(config: EvalConfig, adapter: str | None) -> Any:
    """The judge's engine: prefix caching, raw-logit logprobs, LoRA sized from the adapter, then ``vllm_config``."""
    from vllm import LLM
    from vllm.platforms import current_platform

    engine_args: dict[str, Any] = {
        "model": config.model_name_or_path,
        "dtype": config.infer_dtype,
        "seed": config.seed,
        "trust_remote_code": config.trust_remote_code,
        "max_model_len": config.vllm_maxlen,
        "gpu_memory_utilization": config.vllm_gpu_util,
        "enable_prefix_caching": True,
        "max_logprobs": FULL_VOCABULARY,
        "logprobs_mode": "raw_logprobs",
        "enable_lora": adapter is not None,
    }
    if adapter is not None:
        engine_args["max_lora_rank"] = _lora_rank(Path(adapter))
    if current_platform.is_cpu():
        # vLLM 0.20 on CPU: a seeded request whose prompt is prefilled in chunks kills the engine
        # ("CPU Generator does not use offset"), so prompts are prefilled whole.
        engine_args["enable_chunked_prefill"] = False
    engine_args.update(config.vllm_config)
    for key, needed in (("logprobs_mode", "raw_logprobs"), ("max_logprobs", FULL_VOCABULARY)):
        if engine_args[key] != needed:
            raise VllmConfigError(
                f"vllm_config.{key}={engine_args[key]!r}: scores are exact probabilities of the raw logits' "
                f"full-vocabulary softmax, which needs {key}={needed!r}; remove it from vllm_config."
            )
    logger.info_rank0(f"Starting vLLM for the judge: {engine_args}")
    return LLM(**engine_args)


def score_reserve(tokenizer: Any, delimiter: str) -> int:
    """Tokens after a CoT up to and including the score token: the delimiter, gap tokens and some slack."""
    return len(tokenizer.encode(f" {delimiter} ", add_special_tokens=False)) + SCORE_CONTEXT_SLACK


def _lora_rank(adapter: Path) -> int:
    """vLLM must be told the adapter's rank up front (one of its supported sizes); read it from the PEFT config."""
    config_file = adapter / "adapter_config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file} not found: `adapter_name_or_path` must be a PEFT adapter folder.")
    rank = int(json.loads(config_file.read_text())["r"])
    return next((size for size in VLLM_LORA_RANKS if size >= rank), rank)
