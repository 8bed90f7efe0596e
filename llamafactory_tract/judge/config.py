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

"""The judge's configuration: model, template, predictor, backend, sampling, score format, prompt rules, engine.

Every command that runs a judge extends it with its own keys (``tract eval`` with benchmarks and an output
folder, ``tract judge`` with files, ``tract serve`` with a port, Table 3 with its rows, ``tract generate``
keeps its keys apart), so none inherits a key it must refuse. Files and overrides go through OmegaConf as
in LLaMA-Factory; unknown keys are errors (a typo such as ``temprature`` must not silently fall back to a
default) and every value is checked against its type, so a bad config fails before a model loads. Relative
paths are resolved from the current directory, as in LLaMA-Factory (run from the repository root).
"""

from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from llamafactory_tract.data.authors_rules import AuthorsPromptRules, PromptSectionMissing
from llamafactory_tract.data.judge_card import JUDGE_CARD_FILE, InvalidJudgeCard, JudgeCard, read_judge_card
from llamafactory_tract.data.score_format import ScoreFormat
from llamafactory_tract.extras.config_files import (
    TractConfigError,
    merge,
    parse_overrides,
    read_yaml,
    to_plain,
    validate,
)
from llamafactory_tract.extras.constants import DEFAULT_DELIMITER, DEFAULT_SCORE_VALUES
from llamafactory_tract.extras.fingerprint import digest, fingerprint_path
from llamafactory_tract.hparams.deprecated_keys import rename_deprecated_keys
from llamafactory_tract.judge.backend import SamplingConfig
from llamafactory_tract.judge.grade import DEFAULT_MIN_SCORE_MASS
from llamafactory_tract.judge.predictors import PREDICTORS


class JudgeConfigError(TractConfigError):
    """A judge config is invalid; the message names the file and the offending key."""


# Settings that never change a prediction: excluded from the prediction key.
PREDICTION_NEUTRAL_KEYS = ("batch_size", "vllm_gpu_util", "min_score_mass")
# Switches added after prediction stores existed: keyed only when on, so stores written before them stay valid.
KEYED_WHEN_ON = ("score_only_prompt", "remove_reference", "vllm_batch_invariant")
# Keys an adapter's judge card supplies when the config leaves them out.
CARD_KEYS = ("template", "score_delimiter", "score_values", "score_only_prompt", "remove_reference")


class JudgeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    model_name_or_path: str
    template: str
    adapter_name_or_path: str | None = None
    default_system: str | None = None
    infer_dtype: Literal["auto", "float16", "bfloat16", "float32"] = "auto"
    trust_remote_code: bool = False
    predictor: Literal["cot_rail", "cot_decode", "rail", "decode"] = "cot_rail"
    backend: Literal["hf", "vllm"] = "hf"
    temperature: float = Field(default=1.0, ge=0)
    top_p: float = Field(default=0.9, gt=0, le=1)
    repetition_penalty: float = Field(default=1.03, gt=0)
    max_new_tokens: int = Field(default=1024, ge=1)
    n_cot: int = Field(default=1, ge=1)
    seed: int = 42
    batch_size: int = Field(default=8, ge=1)
    score_delimiter: str = DEFAULT_DELIMITER
    score_values: list[str] = Field(default_factory=lambda: list(DEFAULT_SCORE_VALUES))
    renormalize_scores: bool = False
    """``tract eval`` and Table 3 only: divide the expected score by the score tokens' mass. Off: the paper's
    Eq. 3. The judge's grades (API, ``tract judge``, ``tract serve``) are always on the scale, with the
    paper's number beside them (``judge/grade.py``)."""
    min_score_mass: float = Field(default=DEFAULT_MIN_SCORE_MASS, ge=0, le=1)
    """A grade whose score tokens hold less of the model's mass than this is flagged ``low_score_mass``."""
    cot_end_markers: list[str] = Field(default_factory=lambda: ["[RESULT]"])
    score_only_prompt: bool = False
    """The TRACT authors' no-feedback prompt for score-only judges (the training key of the same name)."""
    remove_reference: bool = False
    """Cut the reference answer out of each prompt, as the authors' ``--remove`` (training has the same key)."""
    max_prompt_len: int | None = Field(default=None, ge=1)
    vllm_gpu_util: float = Field(default=0.9, gt=0, le=1)
    vllm_maxlen: int = Field(default=4096, ge=1)
    vllm_config: dict[str, Any] = Field(default_factory=dict)
    vllm_batch_invariant: bool = False
    """vLLM's batch-invariant kernels (``VLLM_BATCH_INVARIANT=1``; NVIDIA GPUs of compute capability >= 8.0):
    a row's CoT and scores then do not depend on the batch, chunked prefill or prefix-cache hits on a GPU."""

    @field_validator("model_name_or_path", "adapter_name_or_path")
    @classmethod
    def _expand(cls, value: str | None) -> str | None:
        return expand_user(value)

    @model_validator(mode="before")
    @classmethod
    def _card_defaults(cls, data: Any) -> Any:
        """Keys left out are taken from the adapter's judge card (what it was trained with); old key names renamed."""
        if isinstance(data, dict):
            data = rename_deprecated_keys(data)
        card = _adapter_card(data.get("adapter_name_or_path")) if isinstance(data, dict) else None
        if card is None:
            return data
        trained = {**vars(card), "score_values": list(card.score_values)}
        return {**data, **{key: trained[key] for key in CARD_KEYS if data.get(key) is None}}

    @model_validator(mode="after")
    def _check_card(self) -> "JudgeConfig":
        card = _adapter_card(self.adapter_name_or_path)
        if card is not None:
            contradictions = card_contradictions(self, card)
            if contradictions:
                raise ValueError(
                    f"the adapter's judge card ({_card_path(self.adapter_name_or_path)}) says it was trained with "
                    f"{'; '.join(contradictions)}. A judge is calibrated only on the prompt, score format and base "
                    "model it was trained with: set these keys as the card says or leave them out to take its values "
                    "(or delete the card to judge otherwise)"
                )
        return self

    @field_validator("score_values", "cot_end_markers", mode="before")
    @classmethod
    def _split_comma_list(cls, value: Any) -> Any:
        """``score_values=1,2,3`` on the command line, as LLaMA-Factory's own list keys are written."""
        return value.split(",") if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_score_format(self) -> "JudgeConfig":
        _ = self.score_format
        return self

    @model_validator(mode="after")
    def _check_score_only_prompt(self) -> "JudgeConfig":
        if self.score_only_prompt and self.predictor not in ("decode", "rail"):
            raise ValueError(
                f"score_only_prompt asks the judge for the score alone (no feedback), but predictor "
                f"{self.predictor!r} samples a CoT first: use predictor `decode` or `rail`, or unset score_only_prompt"
            )
        return self

    @model_validator(mode="after")
    def _check_batch_invariant(self) -> "JudgeConfig":
        if self.vllm_batch_invariant and self.backend != "vllm":
            raise ValueError(
                "vllm_batch_invariant switches on vLLM's batch-invariant kernels; it needs `backend: vllm` "
                f"(backend {self.backend!r} has no batch-invariant mode)"
            )
        return self

    @property
    def prompt_rules(self) -> AuthorsPromptRules:
        return AuthorsPromptRules(self.score_only_prompt, self.remove_reference)

    @property
    def score_format(self) -> ScoreFormat:
        return ScoreFormat(delimiter=self.score_delimiter, values=tuple(self.score_values))

    @property
    def uses_cot(self) -> bool:
        return PREDICTORS[self.predictor].uses_cot

    def sampling_config(self) -> SamplingConfig:
        return SamplingConfig(self.temperature, self.top_p, self.repetition_penalty, self.max_new_tokens)

    def rows_per_batch(self, n_cot: int | None = None) -> int:
        """Rows per model batch: ``batch_size`` counts sequences, and each row samples ``n_cot`` of them."""
        n_cot = self.n_cot if n_cot is None else n_cot
        return max(1, self.batch_size // n_cot) if self.uses_cot else self.batch_size

    def judge_prompt(self, prompt: str) -> str:
        """The prompt the model sees: ``prompt`` after the authors' rules (unchanged when both are off)."""
        rules = self.prompt_rules
        if not rules.active:
            return prompt
        try:
            return rules.apply(prompt).text
        except PromptSectionMissing as error:
            raise ValueError(f"Cannot apply score_only_prompt/remove_reference to the prompt: {error}.") from None

    def judge_only(self) -> "JudgeConfig":
        """The judge keys alone, without a command's own keys (what a backend or a prediction key needs)."""
        return JudgeConfig.model_validate(self.model_dump(include=set(JudgeConfig.model_fields)))

    def prediction_hash(self) -> str:
        """Key of every setting that changes a prediction, with the model and adapter by content.

        An adapter retrained in place (same path, new weights) therefore never reuses old predictions;
        which rows are predicted, and with which labels, is part of each record's own key. A command's
        own keys (output folders, benchmarks, rows) never enter it.
        """
        off = {key for key in KEYED_WHEN_ON if not getattr(self, key)}
        relevant = self.model_dump(include=set(JudgeConfig.model_fields), exclude={*PREDICTION_NEUTRAL_KEYS, *off})
        relevant["model_name_or_path"] = fingerprint_path(self.model_name_or_path)
        relevant["adapter_name_or_path"] = fingerprint_path(self.adapter_name_or_path)
        return digest(relevant)


def card_contradictions(config: "JudgeConfig", card: JudgeCard) -> list[str]:
    """Each setting of ``config`` that contradicts the training, as 'key X, but the config sets Y'.

    A reference answer removed in training must be removed here too; one kept in training may be removed
    here (the authors' score-only judges; a stage 2 trained on D_self prompts that were already cut).
    """
    trained = {
        "template": card.template,
        "score_delimiter": card.score_delimiter,
        "score_values": list(card.score_values),
        "score_only_prompt": card.score_only_prompt,
    }
    found = [
        f"`{key}` {value!r}, but the config sets {getattr(config, key)!r}"
        for key, value in trained.items()
        if getattr(config, key) != value
    ]
    if card.remove_reference and not config.remove_reference:
        found.append("`remove_reference` True (prompts without the reference answer), but the config sets False")
    if _model_name(card.base_model) != _model_name(config.model_name_or_path):
        found.append(f"base model {card.base_model!r}, but `model_name_or_path` is {config.model_name_or_path!r}")
    return found


def _model_name(path: str) -> str:
    """A model's name whether given as a Hub id or a local folder (a copy elsewhere is the same model)."""
    return Path(path.rstrip("/")).name


def _card_path(adapters: str | None) -> Path:
    """The card of the last adapter: LLaMA-Factory merges the ones before it, and the last one is trained on top."""
    return Path(str(adapters).split(",")[-1].strip()).expanduser() / JUDGE_CARD_FILE


def _adapter_card(adapters: Any) -> JudgeCard | None:
    if not adapters or not isinstance(adapters, str):
        return None
    try:
        return read_judge_card(_card_path(adapters).parent)
    except InvalidJudgeCard as error:
        raise ValueError(str(error)) from None


def expand_user(path: str | None) -> str | None:
    """``~/...`` paths work in YAML (neither LLaMA-Factory nor transformers expand them)."""
    return str(Path(path).expanduser()) if path and path.startswith("~") else path


def build_judge_config(raw: dict[str, Any], source: str = "config") -> JudgeConfig:
    """Validate a mapping into a ``JudgeConfig``; every error names the key."""
    return validate(JudgeConfig, raw, source, JudgeConfigError)


CommandConfig = TypeVar("CommandConfig", bound=JudgeConfig)


def load_command_config(
    items: list[str], model: type[CommandConfig], command: str, error: type[JudgeConfigError] = JudgeConfigError
) -> CommandConfig:
    """Merge YAML files and ``key=value`` overrides (an item with '=' is an override), then validate."""
    files = [item for item in items if "=" not in item]
    overrides = [item for item in items if "=" in item]
    merged = merge(
        *(read_yaml(path, error) for path in files),
        parse_overrides(overrides, error),
        error=error,
    )
    source = command + (f" {' '.join(items)}" if items else "")
    return validate(model, to_plain(merged, source, error), source, error)
