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

"""The ``tract eval`` configuration: the judge's keys plus the benchmarks and where results go."""

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from llamafactory_tract.extras.config_files import merge, parse_overrides, read_yaml, to_plain, validate
from llamafactory_tract.judge.config import JudgeConfig, JudgeConfigError, expand_user


class EvalConfigError(JudgeConfigError):
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


# The evaluation's own keys: never part of a judge's prediction key, nor of the judge a pipeline step runs.
EVAL_COMMAND_KEYS = ("run_name", "output_dir", "benchmarks")


class EvalConfig(JudgeConfig):
    run_name: str | None = None
    output_dir: str = "saves/eval"
    benchmarks: dict[str, BenchmarkConfig] = Field(default_factory=dict)

    @field_validator("output_dir")
    @classmethod
    def _expand_output(cls, value: str) -> str:
        return expand_user(value)

    @field_validator("benchmarks", mode="before")
    @classmethod
    def _empty_entries(cls, value: Any) -> Any:
        """``flask:`` with nothing under it means the hub source with default settings."""
        return {name: entry or {} for name, entry in value.items()} if isinstance(value, dict) else value

    @property
    def display_name(self) -> str:
        return self.run_name or self.predictor


def load_eval_config(path: str | Path, overrides: list[str] | None = None) -> EvalConfig:
    """Read a YAML config and apply ``key=value`` overrides (``benchmarks.mt_bench.limit=5`` for nested keys)."""
    merged = merge(read_yaml(path, EvalConfigError), parse_overrides(overrides or [], EvalConfigError))
    source = str(path) + (f" (with {' '.join(overrides)})" if overrides else "")
    return build_eval_config(to_plain(merged, source, EvalConfigError), source=source)


def build_eval_config(raw: dict[str, Any], source: str = "config") -> EvalConfig:
    """Validate a mapping into an ``EvalConfig``; every error names the key."""
    return validate(EvalConfig, raw, source, EvalConfigError)
