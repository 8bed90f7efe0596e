"""The vLLM backend (GPU): one engine, with prefix caching, for the CoT step and the score step.

CoTs are sampled with ``stop`` on the delimiter and the CoT-end markers. The score step needs the
probability of every score token, exactly: a top-k ``logprobs`` list may miss some of them. So for
each score context and each score literal the engine is asked for the prompt log-probability of
``context + [score token]`` (``prompt_logprobs=0`` returns the logprob of the prompt's own tokens,
from the full-vocabulary softmax of the raw logits). The candidates share the context, which the
prefix cache holds. Tokenizer, template and score contexts are LLaMA-Factory's, as in training, and
prompts are passed as token ids; a LoRA adapter is served through ``LoRARequest``, without merging.
"""

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llamafactory.data import get_template_and_fix_tokenizer
from llamafactory.model import load_tokenizer

from llamafactory_tract.judge.backend import (
    CoTSample,
    JudgeBackend,
    JudgePrompt,
    SamplingConfig,
    build_contexts,
    llamafactory_args,
)
from llamafactory_tract.judge.score_context import CLOSED_BY_EOS, CLOSED_BY_LENGTH, ScoreContextBuilder

if TYPE_CHECKING:
    from llamafactory_tract.eval.config import EvalConfig

VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


class VllmJudgeBackend(JudgeBackend):
    def __init__(self, engine: Any, contexts: ScoreContextBuilder, lora_request: Any = None) -> None:
        super().__init__(contexts)
        self.engine = engine
        self.lora_request = lora_request
        self.stop_token_ids = contexts.template.get_stop_token_ids(contexts.tokenizer)

    @classmethod
    def from_config(cls, config: "EvalConfig", with_cot: bool) -> "VllmJudgeBackend":
        from vllm import LLM
        from vllm.lora.request import LoRARequest

        model_args, data_args, _ = llamafactory_args(config)
        tokenizer = load_tokenizer(model_args)["tokenizer"]
        template = get_template_and_fix_tokenizer(tokenizer, data_args)
        adapter = model_args.adapter_name_or_path[0] if model_args.adapter_name_or_path else None
        engine_args: dict[str, Any] = {
            "model": model_args.model_name_or_path,
            "dtype": config.infer_dtype,
            "seed": config.seed,
            "trust_remote_code": config.trust_remote_code,
            "max_model_len": config.vllm_maxlen,
            "gpu_memory_utilization": config.vllm_gpu_util,
            "enable_prefix_caching": True,
            "enable_lora": adapter is not None,
        }
        if adapter is not None:
            engine_args["max_lora_rank"] = _lora_rank(Path(adapter))
        engine_args.update(config.vllm_config)
        lora_request = LoRARequest("judge", 1, adapter) if adapter is not None else None
        return cls(LLM(**engine_args), build_contexts(tokenizer, template, config, with_cot), lora_request)

    def sample_cots(self, prompts: list[JudgePrompt], sampling: SamplingConfig, seeds: list[int]) -> list[CoTSample]:
        from vllm import SamplingParams, TokensPrompt

        requests = [TokensPrompt(prompt_token_ids=self.contexts.prompt_ids(prompt)) for prompt in prompts]
        params = [
            SamplingParams(
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                repetition_penalty=sampling.repetition_penalty,
                max_tokens=sampling.max_new_tokens,
                stop=list(self.contexts.stop_texts),
                include_stop_str_in_output=True,
                stop_token_ids=self.stop_token_ids,
                seed=seed,
            )
            for seed in seeds
        ]
        outputs = self.engine.generate(requests, params, lora_request=self.lora_request, use_tqdm=False)
        samples, contexts = [], []
        for prompt, output in zip(prompts, outputs, strict=True):
            completion = output.outputs[0]
            default = CLOSED_BY_LENGTH if completion.finish_reason == "length" else CLOSED_BY_EOS
            cot, closed_by = self.contexts.split_generated(completion.text, default)
            samples.append(CoTSample(cot=cot, closed_by=closed_by, generated_tokens=len(completion.token_ids)))
            contexts.append(self.contexts.score_context(prompt, cot))
        for sample, probs in zip(samples, self._score_contexts(contexts), strict=True):
            sample.score_probs = probs
        return samples

    def score_prompts(self, prompts: list[JudgePrompt]) -> list[list[float]]:
        return self._score_contexts([self.contexts.score_context(prompt, "") for prompt in prompts])

    def _score_contexts(self, contexts: list[list[int]]) -> list[list[float]]:
        """Exact p(score token | context) for every score token, via prompt log-probabilities."""
        from vllm import SamplingParams, TokensPrompt

        token_ids = self.score_tokens.token_ids
        requests = [TokensPrompt(prompt_token_ids=context + [token]) for context in contexts for token in token_ids]
        params = SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0.0)
        outputs = self.engine.generate(requests, params, lora_request=self.lora_request, use_tqdm=False)
        probs = [math.exp(output.prompt_logprobs[-1][output.prompt_token_ids[-1]].logprob) for output in outputs]
        width = len(token_ids)
        return [probs[index : index + width] for index in range(0, len(probs), width)]


def _lora_rank(adapter: Path) -> int:
    """vLLM must be told the adapter's rank up front (one of its supported sizes); read it from the PEFT config."""
    config_file = adapter / "adapter_config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file} not found: `adapter_name_or_path` must be a PEFT adapter folder.")
    rank = int(json.loads(config_file.read_text())["r"])
    return next((size for size in VLLM_LORA_RANKS if size >= rank), rank)
