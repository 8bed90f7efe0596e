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

"""Configuration of ``tract judge`` / ``tract serve``: the judge's keys plus the command's own keys.

One flat mapping, as in every LLaMA-Factory YAML: YAML files merged left to right, then
``key=value`` overrides (``columns.response=answer`` for nested keys), through OmegaConf. A
command's config extends ``EvalConfig``, so the judge keys (model, adapter, template, predictor,
backend, sampling, ``n_cot``, ``seed``, ...) have ``tract eval``'s names, types and checks; unknown
keys are refused with the nearest known key. ``tract eval``'s benchmark and output keys are refused.
"""

from typing import TypeVar

from pydantic import model_validator

from llamafactory_tract.eval.config import EvalConfig, EvalConfigError
from llamafactory_tract.extras.config_files import merge, parse_overrides, read_yaml, to_plain, validate

EVAL_ONLY_KEYS = frozenset({"benchmarks", "output_dir", "run_name"})


class JudgeCommandConfig(EvalConfig):
    """The judge keys of ``tract eval``; subclasses add the command's keys."""

    @model_validator(mode="after")
    def _refuse_eval_only_keys(self) -> "JudgeCommandConfig":
        used = sorted(self.model_fields_set & EVAL_ONLY_KEYS)
        if used:
            raise ValueError(f"{used} are `tract eval` keys, not used by this command")
        return self

    def judge_config(self) -> EvalConfig:
        """The judge part alone (its ``prediction_hash`` ignores the command's keys)."""
        judge_keys = set(EvalConfig.model_fields) - EVAL_ONLY_KEYS
        return EvalConfig.model_validate(self.model_dump(include=judge_keys))


CommandConfig = TypeVar("CommandConfig", bound=JudgeCommandConfig)


def load_command_config(items: list[str], model: type[CommandConfig], command: str) -> CommandConfig:
    """Merge YAML files and ``key=value`` overrides (an item with '=' is an override), then validate."""
    files = [item for item in items if "=" not in item]
    overrides = [item for item in items if "=" in item]
    merged = merge(
        *(read_yaml(path, EvalConfigError) for path in files),
        parse_overrides(overrides, EvalConfigError),
        error=EvalConfigError,
    )
    source = command + (f" {' '.join(items)}" if items else "")
    return validate(model, to_plain(merged, source, EvalConfigError), source, EvalConfigError)
