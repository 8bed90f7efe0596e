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

"""The ``tract eval`` configuration: a typed pydantic model read from YAML plus ``key=value`` overrides.

Files and overrides go through OmegaConf as in LLaMA-Factory; unknown keys are errors (a typo such as
``temprature`` must not silently fall back to a default) and every value is checked against its
type, so a bad config fails before a model loads. Relative paths are resolved from the current
directory, as in LLaMA-Factory (run from the repository root).
"""

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from llamafactory_tract.data.authors_rules import AuthorsPromptRules
from llamafactory_tract.data.score_format import DEFAULT_DELIMITER, DEFAULT_SCORE_VALUES, ScoreFormat
from llamafactory_tract.extras.config_files import (
    TractConfigError,
    merge,
    parse_overrides,
    read_yaml,
    to_plain,
    validate,
)
from llamafactory_tract.extras.fingerprint import digest, fingerprint_path


class EvalConfigError(TractConfigError):
    """The evaluation config is invalid; the message names the file and the offending key."""


class BenchmarkConfig(BaseModel):
    """One benchmark entry: ``path`` overrides the hub source, ``limit`` keeps the first N rows."""

    model_config = ConfigDict(extra="forbid")

    path: str | None = None
    limit: int | None = Field(default=None, ge=1)
    skip_malformed: bool = False

    @field_validator("path")
    @classmethod
    def _expand(cls, value: str | None) -> str | None:
        return expand_user(value)


# Settings that never change a prediction: excluded from the prediction key.
PREDICTION_NEUTRAL_KEYS = ("batch_size", "output_dir", "run_name", "vllm_gpu_util", "benchmarks")
# Switches added after prediction stores existed: keyed only when on, so stores written before them stay valid.
KEYED_WHEN_ON = ("score_only_prompt", "remove_reference", "vllm_batch_invariant")


class EvalConfig(BaseModel):
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
    cot_end_markers: list[str] = Field(default_factory=lambda: ["[RESULT]"])
    score_only_prompt: bool = False
    """The TRACT authors' no-feedback prompt for score-only judges (training key ``cotraft_score_only_prompt``)."""
    remove_reference: bool = False
    """Cut the reference answer out of each prompt, as the authors' ``--remove`` (``cotraft_remove_reference``)."""
    max_prompt_len: int | None = Field(default=None, ge=1)
    vllm_gpu_util: float = Field(default=0.9, gt=0, le=1)
    vllm_maxlen: int = Field(default=4096, ge=1)
    vllm_config: dict[str, Any] = Field(default_factory=dict)
    vllm_batch_invariant: bool = False
    """vLLM's batch-invariant kernels (``VLLM_BATCH_INVARIANT=1``; NVIDIA GPUs of compute capability >= 8.0):
    a row's CoT and scores then do not depend on the batch, chunked prefill or prefix-cache hits on a GPU."""
    run_name: str | None = None
    output_dir: str = "saves/eval"
    benchmarks: dict[str, BenchmarkConfig] = Field(default_factory=dict)

    @field_validator("model_name_or_path", "adapter_name_or_path", "output_dir")
    @classmethod
    def _expand(cls, value: str | None) -> str | None:
        return expand_user(value)

    @field_validator("score_values", "cot_end_markers", mode="before")
    @classmethod
    def _split_comma_list(cls, value: Any) -> Any:
        """``score_values=1,2,3`` on the command line, as LLaMA-Factory's own list keys are written."""
        return value.split(",") if isinstance(value, str) else value

    @field_validator("benchmarks", mode="before")
    @classmethod
    def _empty_entries(cls, value: Any) -> Any:
        """``flask:`` with nothing under it means the hub source with default settings."""
        return {name: entry or {} for name, entry in value.items()} if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _check_score_format(self) -> "EvalConfig":
        _ = self.score_format
        return self

    @model_validator(mode="after")
    def _check_score_only_prompt(self) -> "EvalConfig":
        if self.score_only_prompt and self.predictor not in ("decode", "rail"):
            raise ValueError(
                f"score_only_prompt asks the judge for the score alone (no feedback), but predictor "
                f"{self.predictor!r} samples a CoT first: use predictor `decode` or `rail`, or unset score_only_prompt"
            )
        return self

    @model_validator(mode="after")
    def _check_batch_invariant(self) -> "EvalConfig":
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
    def display_name(self) -> str:
        return self.run_name or self.predictor

    def prediction_hash(self) -> str:
        """Key of every setting that changes a prediction, with the model and adapter by content.

        An adapter retrained in place (same path, new weights) therefore never reuses old predictions;
        which rows are predicted, and with which labels, is part of each record's own key.
        """
        off = {key for key in KEYED_WHEN_ON if not getattr(self, key)}
        relevant = self.model_dump(exclude={*PREDICTION_NEUTRAL_KEYS, *off})
        relevant["model_name_or_path"] = fingerprint_path(self.model_name_or_path)
        relevant["adapter_name_or_path"] = fingerprint_path(self.adapter_name_or_path)
        return digest(relevant)


def expand_user(path: str | None) -> str | None:
    """``~/...`` paths work in YAML (neither LLaMA-Factory nor transformers expand them)."""
    return str(Path(path).expanduser()) if path and path.startswith("~") else path


def load_eval_config(path: str | Path, overrides: list[str] | None = None) -> EvalConfig:
    """Read a YAML config and apply ``key=value`` overrides (``benchmarks.mt_bench.limit=5`` for nested keys)."""
    merged = merge(read_yaml(path, EvalConfigError), parse_overrides(overrides or [], EvalConfigError))
    source = str(path) + (f" (with {' '.join(overrides)})" if overrides else "")
    return build_eval_config(to_plain(merged, source, EvalConfigError), source=source)


def build_eval_config(raw: dict[str, Any], source: str = "config") -> EvalConfig:
    """Validate a mapping into an ``EvalConfig``; every error names the key."""
    return validate(EvalConfig, raw, source, EvalConfigError)
