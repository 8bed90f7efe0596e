"""The ``tract eval`` configuration: one typed dataclass read from YAML plus ``key=value`` overrides.

Unknown keys are errors (a typo such as ``temprature`` must not silently fall back to a default),
and every value is checked against its field type, so a bad config fails before a model loads.
Relative paths are resolved from the current directory, as in LLaMA-Factory (run from the repo root).
"""

import hashlib
import json
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import yaml

from llamafactory_tract.data.score_format import DEFAULT_DELIMITER, DEFAULT_SCORE_VALUES, ScoreFormat


class EvalConfigError(ValueError):
    """The evaluation config is invalid; the message names the offending key."""


@dataclass
class BenchmarkConfig:
    """One benchmark entry: ``path`` overrides the hub source, ``limit`` keeps the first N rows."""

    path: str | None = None
    limit: int | None = None
    skip_malformed: bool = False


@dataclass
class EvalConfig:
    model_name_or_path: str
    template: str
    adapter_name_or_path: str | None = None
    default_system: str | None = None
    infer_dtype: Literal["auto", "float16", "bfloat16", "float32"] = "auto"
    trust_remote_code: bool = False
    predictor: Literal["cot_rail", "cot_decode", "rail", "decode"] = "cot_rail"
    backend: Literal["hf", "vllm"] = "hf"
    temperature: float = 1.0
    top_p: float = 0.9
    repetition_penalty: float = 1.03
    max_new_tokens: int = 1024
    n_cot: int = 1
    seed: int = 42
    batch_size: int = 8
    score_delimiter: str = DEFAULT_DELIMITER
    score_values: list[str] = field(default_factory=lambda: list(DEFAULT_SCORE_VALUES))
    renormalize_scores: bool = False
    cot_end_markers: list[str] = field(default_factory=lambda: ["[RESULT]"])
    max_prompt_len: int | None = None
    vllm_gpu_util: float = 0.9
    vllm_maxlen: int = 4096
    vllm_config: dict[str, Any] = field(default_factory=dict)
    run_name: str | None = None
    output_dir: str = "saves/eval"
    benchmarks: dict[str, BenchmarkConfig] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.model_name_or_path = _expand_user(self.model_name_or_path)
        self.adapter_name_or_path = _expand_user(self.adapter_name_or_path)
        self.output_dir = _expand_user(self.output_dir)
        for bench in self.benchmarks.values():
            bench.path = _expand_user(bench.path)
        for name, value in (
            ("n_cot", self.n_cot),
            ("batch_size", self.batch_size),
            ("max_new_tokens", self.max_new_tokens),
        ):
            if value < 1:
                raise EvalConfigError(f"`{name}` must be >= 1, got {value}.")
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.repetition_penalty <= 0:
            raise EvalConfigError(
                f"Invalid sampling parameters: temperature={self.temperature} (>= 0), top_p={self.top_p} (0, 1], "
                f"repetition_penalty={self.repetition_penalty} (> 0)."
            )
        try:
            ScoreFormat(delimiter=self.score_delimiter, values=tuple(str(value) for value in self.score_values))
        except ValueError as error:
            raise EvalConfigError(str(error)) from error

    @property
    def score_format(self) -> ScoreFormat:
        return ScoreFormat(delimiter=self.score_delimiter, values=tuple(str(value) for value in self.score_values))

    @property
    def display_name(self) -> str:
        return self.run_name or self.predictor

    def prediction_hash(self) -> str:
        """Hash of every setting that changes a prediction, so stale predictions are never reused."""
        relevant = asdict(self)
        for key in ("batch_size", "output_dir", "run_name", "vllm_gpu_util", "benchmarks"):
            relevant.pop(key)
        relevant["benchmark_paths"] = {name: bench.path for name, bench in sorted(self.benchmarks.items())}
        return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def load_eval_config(path: str | Path, overrides: list[str] | None = None) -> EvalConfig:
    """Read a YAML config and apply ``key=value`` overrides (``benchmarks.mt_bench.limit=5`` for nested keys)."""
    path = Path(path)
    if not path.is_file():
        raise EvalConfigError(f"Config file {path} does not exist.")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise EvalConfigError(f"{path} must contain a mapping of keys to values.")
    for override in overrides or []:
        apply_override(raw, override)
    return build_eval_config(raw, source=str(path))


def build_eval_config(raw: dict[str, Any], source: str = "config") -> EvalConfig:
    """Validate a mapping into an ``EvalConfig``; every error names the key."""
    values = check_fields(EvalConfig, raw, source)
    benchmarks = values.get("benchmarks") or {}
    values["benchmarks"] = {
        str(name): BenchmarkConfig(**check_fields(BenchmarkConfig, entry or {}, f"{source}: benchmarks.{name}"))
        for name, entry in benchmarks.items()
    }
    return EvalConfig(**values)


def apply_override(raw: dict[str, Any], override: str) -> None:
    key, separator, text = override.partition("=")
    if not separator or not key:
        raise EvalConfigError(f"Override {override!r} is not of the form key=value.")
    target = raw
    *parents, leaf = key.strip().split(".")
    for parent in parents:
        target = target.setdefault(parent, {})
        if target is None or not isinstance(target, dict):
            raise EvalConfigError(f"Override {override!r}: {parent!r} is not a mapping.")
    target[leaf] = yaml.safe_load(text)


def check_fields(cls: type, raw: dict[str, Any], source: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise EvalConfigError(f"{source}: expected a mapping, got {raw!r}.")
    hints = typing.get_type_hints(cls)
    known = {item.name for item in fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise EvalConfigError(f"{source}: unknown key(s) {unknown}. Known keys: {sorted(known)}.")
    checked = {}
    for key, value in raw.items():
        if key == "benchmarks":
            if value is not None and not isinstance(value, dict):
                raise EvalConfigError(f"{source}: `benchmarks` must map benchmark names to settings.")
            checked[key] = value
            continue
        checked[key] = _coerce(value, hints[key], f"{source}: `{key}`")
    missing = [item.name for item in fields(cls) if item.name not in checked and _is_required(item)]
    if missing:
        raise EvalConfigError(f"{source}: missing required key(s) {missing}.")
    return checked


def _expand_user(path: str | None) -> str | None:
    """``~/...`` paths work in YAML (neither LLaMA-Factory nor transformers expand them)."""
    return str(Path(path).expanduser()) if path and path.startswith("~") else path


def _is_required(item: Any) -> bool:
    return item.default is MISSING and item.default_factory is MISSING


def _coerce(value: Any, annotation: Any, label: str) -> Any:
    """Return ``value`` as ``annotation`` (ints widen to floats, scalars to strings in lists), else raise."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (arg for arg in args if arg is not type(None)):
            try:
                return _coerce(value, option, label)
            except EvalConfigError as error:
                errors.append(str(error))
        raise EvalConfigError(errors[0])
    if origin is Literal:
        if value not in args:
            raise EvalConfigError(f"{label} must be one of {list(args)}, got {value!r}.")
        return value
    if origin is list:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list):
            raise EvalConfigError(f"{label} must be a list, got {value!r}.")
        return [_coerce(item, args[0], label) for item in items]
    if origin is dict:
        if not isinstance(value, dict):
            raise EvalConfigError(f"{label} must be a mapping, got {value!r}.")
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise EvalConfigError(f"{label} must be true or false, got {value!r}.")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise EvalConfigError(f"{label} must be an integer, got {value!r}.")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise EvalConfigError(f"{label} must be a number, got {value!r}.")
        return float(value)
    if annotation is str:
        if isinstance(value, (dict, list)) or value is None:
            raise EvalConfigError(f"{label} must be a string, got {value!r}.")
        return str(value)
    raise EvalConfigError(f"{label}: unsupported type {annotation}.")
