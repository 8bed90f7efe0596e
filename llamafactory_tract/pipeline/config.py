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

"""The ``tract pipeline`` configuration: Algorithm 1 as steps that reuse the stage and eval YAMLs.

A pipeline YAML names the seed model once (``model_name_or_path`` + ``template``: swapping the base
model is two lines) and points each step at an ordinary recipe: LLaMA-Factory training YAMLs for
the stages, a ``tract eval`` YAML for the evaluation. ``base: other.yaml`` inherits another pipeline
YAML (deep-merged by OmegaConf; a list of bases merges left to right), so each Table 2 row is a few
lines on top of one per-model file. ``{run_root}`` in any string is replaced by the ``run_root`` key
*after* every file and override is merged, so ``run_root=X`` moves every folder that names it; rows
that share a step (TRACT, A.1, A.2 and A.4 share stage 1 and D_self) point at the same folder.
"""

from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from omegaconf import DictConfig, OmegaConf
from pydantic import BaseModel, ConfigDict, Field, model_validator

from llamafactory_tract.extras.config_files import (
    TractConfigError,
    merge,
    parse_overrides,
    read_yaml,
    to_plain,
    validate,
)


class PipelineConfigError(TractConfigError):
    """A pipeline config or step cannot run as configured; the message names the step and what to change."""


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TrainStep(_Step):
    recipe: str
    overrides: dict[str, Any] = Field(default_factory=dict)
    output_dir: str | None = None
    init: Literal["seed", "stage1"] = "seed"
    """Stage 2 only: start from the seed model (Algorithm 1) or continue the stage-1 adapter (Table 2 A.4)."""


class GenerationStep(_Step):
    """D_self: judge settings (sampling, backend, batch size, ...) go in ``overrides``."""

    dataset: str | None = None
    dataset_dir: str | None = None
    output: str | None = None
    limit: int | None = Field(default=None, ge=1)
    drop_forced: bool = False
    overrides: dict[str, Any] = Field(default_factory=dict)


class EvalStep(_Step):
    recipe: str
    overrides: dict[str, Any] = Field(default_factory=dict)
    output_dir: str | None = None


class PipelineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    run_dir: str
    model_name_or_path: str
    template: str
    run_root: str = "saves"
    name: str | None = None
    stage1: TrainStep | None = None
    self_generation: GenerationStep | None = None
    stage2: TrainStep | None = None
    evaluation: EvalStep | None = None

    @model_validator(mode="after")
    def _check_steps(self) -> "PipelineConfig":
        if self.self_generation and not self.stage1:
            raise ValueError("`self_generation` samples with the stage-1 model: configure `stage1` too.")
        if self.stage2 and not self.self_generation and "dataset" not in self.stage2.overrides:
            raise ValueError("`stage2` trains on D_self: configure `self_generation` (or a stage-2 dataset).")
        if self.stage2 and self.stage2.init == StepName.STAGE1 and not self.stage1:
            raise ValueError("`stage2.init: stage1` needs a `stage1` step.")
        return self

    @property
    def display_name(self) -> str:
        return self.name or Path(self.run_dir).name

    def step_dir(self, step: str, configured: str | None) -> Path:
        return Path(configured) if configured else Path(self.run_dir) / step


class StepName(StrEnum):
    """The steps of Algorithm 1, in order; each is a key of the pipeline YAML."""

    STAGE1 = "stage1"
    SELF_GENERATION = "self_generation"
    STAGE2 = "stage2"
    EVALUATION = "evaluation"


RUN_ROOT_PLACEHOLDER = "{run_root}"


def resolve_recipe(recipe: str, including_dir: Path) -> str:
    """A step's recipe next to the YAML that names it if it is there (shipped recipe sets), else as given."""
    beside = including_dir / recipe
    return str(beside) if beside.is_file() else recipe


def read_pipeline_yaml(path: Path, seen: tuple[Path, ...] = ()) -> DictConfig:
    """The YAML mapping with its ``base`` chain merged in (paths relative to the including file)."""
    path = path.resolve()
    if path in seen:
        raise PipelineConfigError(f"{path}: `base` includes itself ({' -> '.join(map(str, (*seen, path)))}).")
    config = read_yaml(path, PipelineConfigError)
    for step in StepName:
        if isinstance(config.get(step), DictConfig) and isinstance(config[step].get("recipe"), str):
            config[step].recipe = resolve_recipe(config[step].recipe, path.parent)
    bases = config.pop("base", None) or []
    bases = [bases] if isinstance(bases, str) else list(bases)
    inherited = [read_pipeline_yaml(path.parent / base, (*seen, path)) for base in bases]
    return merge(*inherited, config, error=PipelineConfigError)


def substitute_run_root(value: Any, run_root: str) -> Any:
    if isinstance(value, str):
        return value.replace(RUN_ROOT_PLACEHOLDER, run_root)
    if isinstance(value, dict):
        return {key: substitute_run_root(item, run_root) for key, item in value.items()}
    if isinstance(value, list):
        return [substitute_run_root(item, run_root) for item in value]
    return value


def load_pipeline_config(
    paths: list[str | Path], overrides: dict[str, Any] | list[str] | None = None
) -> PipelineConfig:
    """Merge the YAMLs left to right (e.g. a model file, then a Table 2 row), then ``overrides``
    (a mapping, or ``key=value`` items), and only then substitute ``{run_root}``."""
    if not paths:
        raise PipelineConfigError("Name at least one pipeline YAML.")
    layers = [read_pipeline_yaml(Path(path)) for path in paths]
    if isinstance(overrides, list):
        layers.append(parse_overrides(overrides, PipelineConfigError))
    elif overrides:
        layers.append(OmegaConf.create(overrides))
    source = " + ".join(str(path) for path in paths) + (" + overrides" if overrides else "")
    raw = to_plain(merge(*layers, error=PipelineConfigError), source, PipelineConfigError)
    raw = substitute_run_root(raw, str(raw.get("run_root", PipelineConfig.model_fields["run_root"].default)))
    return validate(PipelineConfig, raw, source, PipelineConfigError)
