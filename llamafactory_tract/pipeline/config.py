"""The ``tract pipeline`` configuration: Algorithm 1 as steps that reuse the stage and eval YAMLs.

A pipeline YAML names the seed model once (``model_name_or_path`` + ``template``: swapping the base
model is two lines) and points each step at an ordinary recipe: LLaMA-Factory training YAMLs for
the stages, a ``tract eval`` YAML for the evaluation. ``base: other.yaml`` inherits another pipeline
YAML (deep-merged; a list merges left to right), so each Table 2 row is a few lines on top of one
per-model file. ``{run_root}`` in any string is replaced by the ``run_root`` key, so rows that share
a step (TRACT, A.1, A.2 and A.4 share stage 1 and D_self) point at the same folder and reuse it.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from llamafactory_tract.eval.config import EvalConfigError, check_fields


@dataclass
class TrainStep:
    recipe: str
    overrides: dict[str, Any] = field(default_factory=dict)
    output_dir: str | None = None
    init: Literal["seed", "stage1"] = "seed"
    """Stage 2 only: start from the seed model (Algorithm 1) or continue the stage-1 adapter (Table 2 A.4)."""


@dataclass
class GenerationStep:
    """D_self: judge settings (sampling, backend, batch size, ...) go in ``overrides``."""

    dataset: str | None = None
    dataset_dir: str | None = None
    output: str | None = None
    limit: int | None = None
    drop_forced: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvalStep:
    recipe: str
    overrides: dict[str, Any] = field(default_factory=dict)
    output_dir: str | None = None


@dataclass
class PipelineConfig:
    run_dir: str
    model_name_or_path: str
    template: str
    run_root: str = "saves"
    name: str | None = None
    stage1: TrainStep | None = None
    self_generation: GenerationStep | None = None
    stage2: TrainStep | None = None
    evaluation: EvalStep | None = None

    def __post_init__(self) -> None:
        if self.self_generation and not self.stage1:
            raise EvalConfigError("`self_generation` samples with the stage-1 model: configure `stage1` too.")
        if self.stage2 and not self.self_generation and "dataset" not in self.stage2.overrides:
            raise EvalConfigError("`stage2` trains on D_self: configure `self_generation` (or a stage-2 dataset).")
        if self.stage2 and self.stage2.init == "stage1" and not self.stage1:
            raise EvalConfigError("`stage2.init: stage1` needs a `stage1` step.")

    @property
    def display_name(self) -> str:
        return self.name or Path(self.run_dir).name

    def step_dir(self, step: str, configured: str | None) -> Path:
        return Path(configured) if configured else Path(self.run_dir) / step


STEP_TYPES = {"stage1": TrainStep, "self_generation": GenerationStep, "stage2": TrainStep, "evaluation": EvalStep}


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def resolve_recipe(recipe: str, including_dir: Path) -> str:
    """A step's recipe next to the YAML that names it if it is there (shipped recipe sets), else as given."""
    beside = including_dir / recipe
    return str(beside) if beside.is_file() else recipe


def read_pipeline_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The YAML mapping with its ``base`` chain merged in (paths relative to the including file)."""
    path = path.resolve()
    if path in seen:
        raise EvalConfigError(f"{path}: `base` includes itself ({' -> '.join(map(str, seen))}).")
    if not path.is_file():
        raise EvalConfigError(f"Pipeline config {path} does not exist.")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise EvalConfigError(f"{path} must contain a mapping of keys to values.")
    for step in STEP_TYPES:
        if isinstance(raw.get(step), dict) and "recipe" in raw[step]:
            raw[step]["recipe"] = resolve_recipe(raw[step]["recipe"], path.parent)
    bases = raw.pop("base", None) or []
    merged: dict[str, Any] = {}
    for base in [bases] if isinstance(bases, str) else bases:
        merged = deep_merge(merged, read_pipeline_yaml(path.parent / base, (*seen, path)))
    return deep_merge(merged, raw)


def substitute_run_root(value: Any, run_root: str) -> Any:
    if isinstance(value, str):
        return value.replace("{run_root}", run_root)
    if isinstance(value, dict):
        return {key: substitute_run_root(item, run_root) for key, item in value.items()}
    if isinstance(value, list):
        return [substitute_run_root(item, run_root) for item in value]
    return value


def load_pipeline_config(paths: list[str | Path], overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Merge the YAMLs left to right (e.g. a model file, then a Table 2 row), then ``overrides``."""
    raw: dict[str, Any] = {}
    for path in paths:
        raw = deep_merge(raw, read_pipeline_yaml(Path(path)))
    raw = substitute_run_root(deep_merge(raw, overrides or {}), str(raw.get("run_root", "saves")))
    source = " + ".join(str(path) for path in paths)
    values = check_fields(PipelineConfig, {key: value for key, value in raw.items() if key not in STEP_TYPES}, source)
    for step, step_type in STEP_TYPES.items():
        if raw.get(step) is not None:
            values[step] = step_type(**check_fields(step_type, raw[step], f"{source}: {step}"))
    return PipelineConfig(**values)
