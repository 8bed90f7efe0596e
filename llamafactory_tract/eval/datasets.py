"""Evaluation benchmarks of Table 2: a registry of hub sources and two row formats.

Prometheus evaluation format (Vicuna Bench, MT Bench, FLASK): ``instruction`` is the full judge
prompt and the ground truth is the mean of the three ``gpt4_score`` values. Feedback Bench:
``instruction`` plus an ``output`` that ends in ``[RESULT] y``. Real users load from the hub; a
local ``path`` overrides it. Malformed rows are reported with their index and never scored.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llamafactory_tract.data.score_format import PROMETHEUS_RESULT_MARKER, InvalidJudgeResponse, ScoreFormat
from llamafactory_tract.extras.logging import get_logger

logger = get_logger(__name__)

PROMETHEUS_EVAL_URL = "https://raw.githubusercontent.com/prometheus-eval/prometheus-eval/main/eval/benchmark/data/{}"
MAX_REPORTED_ROWS = 10


class BenchmarkDataError(ValueError):
    """A benchmark file is missing, unreadable or has malformed rows; the message names file and rows."""


@dataclass(frozen=True)
class BenchmarkRow:
    """One scored example; ``row`` is its 0-based position in the source file (the resume key)."""

    row: int
    instruction: str
    ground_truth: float
    source_id: Any = None


@dataclass(frozen=True)
class BenchmarkSpec:
    name: str
    title: str
    hub_source: str
    parse_row: Callable[[dict[str, Any], ScoreFormat], tuple[str, float]]
    """``hub_source``: an HF dataset id, or a URL of a JSON file (loaded with ``datasets``' json builder)."""


def parse_prometheus_row(record: dict[str, Any], score_format: ScoreFormat) -> tuple[str, float]:
    """(prompt, mean of ``gpt4_score``); raise ``InvalidJudgeResponse`` with the reason."""
    instruction = _instruction(record)
    scores = record.get("gpt4_score")
    if not isinstance(scores, list) or not scores:
        raise InvalidJudgeResponse(f"`gpt4_score` must be a non-empty list of scores, got {scores!r}")
    numbers = [float(score_format.canonical_literal(str(score))) for score in scores]
    return instruction, sum(numbers) / len(numbers)


def parse_feedback_bench_row(record: dict[str, Any], score_format: ScoreFormat) -> tuple[str, float]:
    """(prompt, the score after ``[RESULT]`` in ``output``)."""
    instruction = _instruction(record)
    output = record.get("output")
    if not isinstance(output, str) or PROMETHEUS_RESULT_MARKER not in output:
        raise InvalidJudgeResponse(f"`output` must end with '{PROMETHEUS_RESULT_MARKER} <score>', got {output!r:.80}")
    raw_score = output.rpartition(PROMETHEUS_RESULT_MARKER)[2]
    return instruction, float(score_format.canonical_literal(raw_score))


def _instruction(record: dict[str, Any]) -> str:
    instruction = record.get("instruction")
    if not isinstance(instruction, str) or not instruction.strip():
        raise InvalidJudgeResponse("`instruction` is missing or empty")
    return instruction


BENCHMARKS: dict[str, BenchmarkSpec] = {
    spec.name: spec
    for spec in (
        BenchmarkSpec("feedback_bench", "FB Bench", "prometheus-eval/Feedback-Bench", parse_feedback_bench_row),
        BenchmarkSpec("flask", "FLASK", PROMETHEUS_EVAL_URL.format("flask_eval.json"), parse_prometheus_row),
        BenchmarkSpec(
            "vicuna_bench", "Vic. Bench", PROMETHEUS_EVAL_URL.format("vicuna_eval.json"), parse_prometheus_row
        ),
        BenchmarkSpec("mt_bench", "MT Bench", PROMETHEUS_EVAL_URL.format("mt_bench_eval.json"), parse_prometheus_row),
    )
}


def get_benchmark_spec(name: str) -> BenchmarkSpec:
    if name not in BENCHMARKS:
        raise BenchmarkDataError(f"Unknown benchmark {name!r}; known benchmarks: {sorted(BENCHMARKS)}.")
    return BENCHMARKS[name]


def load_benchmark(
    name: str,
    score_format: ScoreFormat,
    path: str | None = None,
    limit: int | None = None,
    skip_malformed: bool = False,
) -> list[BenchmarkRow]:
    """Rows of one benchmark (first ``limit``), validated; malformed rows raise, or are skipped and reported."""
    spec = get_benchmark_spec(name)
    source = path or spec.hub_source
    records = read_local_records(Path(path)) if path else read_hub_records(spec.hub_source)
    if limit is not None:
        records = records[:limit]
    rows, problems = [], []
    for index, record in enumerate(records):
        try:
            if not isinstance(record, dict):
                raise InvalidJudgeResponse(f"expected a JSON object, got {type(record).__name__}")
            instruction, truth = spec.parse_row(record, score_format)
        except InvalidJudgeResponse as error:
            problems.append(f"row {index}: {error}")
            continue
        rows.append(BenchmarkRow(row=index, instruction=instruction, ground_truth=truth, source_id=record.get("idx")))
    if problems:
        message = (
            f"{name} ({source}): {len(problems)} of {len(records)} rows are malformed: "
            + "; ".join(problems[:MAX_REPORTED_ROWS])
            + (" ..." if len(problems) > MAX_REPORTED_ROWS else "")
        )
        if not skip_malformed:
            raise BenchmarkDataError(message + " (set `skip_malformed: true` for this benchmark to skip them)")
        logger.warning_rank0(f"Skipping malformed rows, not scored: {message}")
    if not rows:
        raise BenchmarkDataError(f"{name} ({source}): no valid rows to evaluate.")
    return rows


def read_local_records(path: Path) -> list[Any]:
    """A JSON list or JSON-lines file; errors name the file (and line for JSONL)."""
    if not path.is_file():
        raise BenchmarkDataError(f"Benchmark file {path} does not exist.")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise BenchmarkDataError(f"{path}: line {number} is not valid JSON ({error}).") from error
        return records
    try:
        records = json.loads(text)
    except json.JSONDecodeError as error:
        raise BenchmarkDataError(f"{path} is not valid JSON ({error}).") from error
    if not isinstance(records, list):
        raise BenchmarkDataError(f"{path} must contain a JSON list of rows, got {type(records).__name__}.")
    return records


def read_hub_records(source: str) -> list[dict[str, Any]]:
    """Download a benchmark: an HF dataset id, or a URL of a JSON file."""
    from datasets import load_dataset

    if source.startswith(("http://", "https://")):
        dataset = load_dataset("json", data_files=source, split="train")
    else:
        dataset = load_dataset(source, split="train")
    return [dict(record) for record in dataset]
