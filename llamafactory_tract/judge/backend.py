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

"""The backend interface: sample CoTs and return score-token probabilities, whatever engine runs the model.

A backend answers two questions for a batch of judge prompts: "sample a CoT and give me the
probabilities of the score tokens after it" (CoT predictors) and "give me the probabilities of
the score tokens after this prompt and this given CoT" (no-CoT predictors with an empty CoT;
``tract report table3`` with the training CoT). Probabilities are the model's
full-vocabulary softmax at the score position (not renormalised, not temperature-scaled), in
the order of ``ScoreFormat.values``. Tokenizer, template and score tokens come from
LLaMA-Factory exactly as in training.
"""

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llamafactory_tract.data.score_tokens import ScoreTokens, resolve_score_tokens
from llamafactory_tract.judge.score_context import ScoreContextBuilder

if TYPE_CHECKING:
    from llamafactory.hparams import DataArguments, FinetuningArguments, ModelArguments

    from llamafactory_tract.judge.config import JudgeConfig


@dataclass(frozen=True)
class JudgePrompt:
    """The user turn(s) of a judge example; ``system=None`` applies the template's default system."""

    messages: list[dict[str, str]]
    system: str | None = None
    tools: str | None = None

    @classmethod
    def from_instruction(cls, instruction: str) -> "JudgePrompt":
        """A one-turn prompt, as LLaMA-Factory's alpaca converter builds it from ``instruction``."""
        return cls(messages=[{"role": "user", "content": instruction}])


@dataclass(frozen=True)
class SamplingConfig:
    """CoT sampling (paper: temperature 1.0, top_p 0.9, repetition penalty 1.03, 1024 new tokens)."""

    temperature: float = 1.0
    top_p: float = 0.9
    repetition_penalty: float = 1.03
    max_new_tokens: int = 1024


@dataclass
class CoTSample:
    """One sampled CoT and the score-token probabilities that follow it."""

    cot: str
    closed_by: str
    """'delimiter', 'marker' (e.g. '[RESULT]'), 'eos' or 'max_new_tokens'; all but the first were closed by force."""
    generated_tokens: int
    score_probs: list[float] = field(default_factory=list)


class JudgeBackend(ABC):
    """One engine behind both predictor steps; subclasses own the model."""

    def __init__(self, contexts: ScoreContextBuilder) -> None:
        self.contexts = contexts

    @property
    def score_tokens(self) -> ScoreTokens:
        return self.contexts.score_tokens

    @abstractmethod
    def sample_cots(
        self, prompts: list[JudgePrompt], sampling: SamplingConfig, seeds: list[int], with_scores: bool = True
    ) -> list[CoTSample]:
        """One CoT per prompt (repeat a prompt for several CoTs), each with its score probabilities.

        ``with_scores=False`` skips the score step (D_self keeps the CoT and attaches y*); ``score_probs`` stay empty.
        """

    @abstractmethod
    def score_cots(self, prompts: list[JudgePrompt], cots: list[str]) -> list[list[float]]:
        """Score probabilities after each prompt and its given CoT, on the training-style context (teacher-forced).

        The context is ``score_context(prompt, cot)``: with a CoT, ``<cot> <delimiter>`` and any gap tokens;
        with an empty CoT of a no-CoT judge, only the gap tokens before the score.
        """

    def score_prompts(self, prompts: list[JudgePrompt]) -> list[list[float]]:
        """Score probabilities right after each prompt (plus any gap tokens before the score)."""
        return self.score_cots(prompts, [""] * len(prompts))

    def close(self) -> None:  # noqa: B027 (optional: only engines outside this process need it)
        """Release the engine and its device memory before the process ends."""

    def engine_dead(self) -> bool:
        """Whether the engine can answer no request any more; an engine inside this process dies with it."""
        return False


def llamafactory_args(config: "JudgeConfig") -> tuple["ModelArguments", "DataArguments", "FinetuningArguments"]:
    """Parse the model part of the judge config with LLaMA-Factory's own inference argument parser.

    Always as ``infer_backend: huggingface``, also for ``backend: vllm``: LLaMA-Factory only supplies
    tokenizer, template and adapter paths here, and its vLLM check (``vllm<=0.11.0``, distribution
    ``vllm``) would refuse the vLLM this project pins and the CPU build it is tested with.
    """
    from llamafactory.hparams import get_infer_args

    args: dict[str, Any] = {
        "model_name_or_path": config.model_name_or_path,
        "template": config.template,
        "infer_dtype": config.infer_dtype,
        "trust_remote_code": config.trust_remote_code,
        "infer_backend": "huggingface",
    }
    if config.adapter_name_or_path:
        args["adapter_name_or_path"] = config.adapter_name_or_path
    if config.default_system is not None:
        args["default_system"] = config.default_system
    model_args, data_args, finetuning_args, _ = get_infer_args(args)
    return model_args, data_args, finetuning_args


def build_contexts(
    tokenizer: Any, template: Any, config: "JudgeConfig", with_cot: bool, max_prompt_len: int | None = None
) -> ScoreContextBuilder:
    """Score contexts with the config's ``max_prompt_len``, or ``max_prompt_len`` when the config leaves it unset."""
    score_tokens = resolve_score_tokens(template, tokenizer, config.score_format, with_cot=with_cot)
    return ScoreContextBuilder(
        template,
        tokenizer,
        score_tokens,
        config.max_prompt_len or max_prompt_len,
        tuple(config.cot_end_markers) if with_cot else (),
    )
