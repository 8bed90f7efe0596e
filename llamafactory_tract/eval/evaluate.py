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

"""``tract eval``: load the benchmarks, predict what is not predicted yet, compute Table 2 metrics, save.

Benchmarks are loaded and validated before the model, so a malformed file fails in seconds. Rows
are predicted in batches (longest prompts first: less padding, and an out-of-memory error shows
at once); every batch is appended to ``predictions.jsonl`` before the next starts. A stored
prediction is reused only for the same settings, model/adapter content and row content (prompt and
label), so editing a benchmark's labels re-predicts those rows and changes the metrics.
"""

import csv
import json
import math
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llamafactory_tract.eval.config import EvalConfig, EvalConfigError
from llamafactory_tract.eval.datasets import BenchmarkRow, get_benchmark_spec, load_benchmark
from llamafactory_tract.eval.intervals import (
    CONFIDENCE,
    METHOD,
    Interval,
    intervals_of,
    metric_distribution,
    row_groups,
    undefined_resamples,
)
from llamafactory_tract.eval.metrics import AVERAGED, average_metrics, format_table, score_metrics
from llamafactory_tract.eval.pairwise import PairwiseResult, pairwise_agreement
from llamafactory_tract.extras.logging import get_logger
from llamafactory_tract.judge.backend import JudgePrompt
from llamafactory_tract.judge.loader import load_backend
from llamafactory_tract.judge.prediction_loop import BatchPredictor, predict_resumable
from llamafactory_tract.judge.prediction_store import PredictionStore, RecordKey, input_hash
from llamafactory_tract.judge.predictors import JudgePredictor
from llamafactory_tract.judge.score_context import CLOSED_BY_DELIMITER

logger = get_logger(__name__)

PREDICTIONS_FILE = "predictions.jsonl"
METRICS_JSON = "metrics.json"
METRICS_CSV = "metrics.csv"


@dataclass
class EvalReport:
    run_name: str
    per_benchmark: dict[str, dict[str, float]]
    average: dict[str, float]
    table: str
    closed_by: dict[str, dict[str, int]] = field(default_factory=dict)
    output_dir: Path = Path(".")
    intervals: dict[str, dict[str, Interval]] = field(default_factory=dict)
    """95% intervals per benchmark and for ``average`` (``eval/intervals.py``); empty for old metrics files."""
    pairwise: dict[str, PairwiseResult] = field(default_factory=dict)
    """Agreement with GPT-4 on which response of a question is better (``eval/pairwise.py``), where it applies."""


def run_evaluation(config: EvalConfig) -> EvalReport:
    if not config.benchmarks:
        raise EvalConfigError("`benchmarks` is empty; name at least one benchmark.")
    output_dir = Path(config.output_dir)
    benchmarks = {
        name: load_benchmark(
            name, config.score_format, bench.path, bench.limit, bench.skip_malformed, config.prompt_rules
        )
        for name, bench in config.benchmarks.items()
    }
    rows = [(name, row) for name, rows in benchmarks.items() for row in rows]
    records = predict_resumable(
        rows,
        key_of=lambda item: row_key(*item),
        store=PredictionStore(output_dir / PREDICTIONS_FILE, config.prediction_hash()),
        open_predictor=lambda: _open_predictor(config),
        rows_per_batch=config.rows_per_batch(),
        length_of=lambda item: len(item[1].instruction),
        description=f"tract eval ({config.predictor})",
    )
    return _report(config, benchmarks, records, output_dir)


def row_key(name: str, row: BenchmarkRow) -> RecordKey:
    """A row's prediction key: benchmark, row index and the content it is predicted and scored on."""
    return name, row.row, input_hash({"instruction": row.instruction, "ground_truth": row.ground_truth})


@contextmanager
def _open_predictor(config: EvalConfig) -> Iterator[BatchPredictor]:
    backend = load_backend(config, with_cot=config.uses_cot)
    predictor = JudgePredictor.from_config(backend, config)

    def predict(batch: list[tuple[str, BenchmarkRow]]) -> list[dict[str, Any]]:
        prompts = [JudgePrompt.from_instruction(row.instruction) for _, row in batch]
        predictions = predictor.predict(prompts, [f"{name}/{row.row}" for name, row in batch])
        return [
            {
                "source_id": row.source_id,
                "ground_truth": row.ground_truth,
                "predictor": config.predictor,
                "score": prediction.score,
                "cot_scores": prediction.cot_scores,
                "score_probs": prediction.score_probs,
                "cots": prediction.cots,
                "closed_by": prediction.closed_by,
                "generated_tokens": prediction.generated_tokens,
            }
            for (_, row), prediction in zip(batch, predictions, strict=True)
        ]

    try:
        yield predict
    finally:
        backend.close()  # the engine and its device memory, before the caller moves on


def _report(
    config: EvalConfig,
    benchmarks: dict[str, list[BenchmarkRow]],
    records: dict[RecordKey, dict[str, Any]],
    output_dir: Path,
) -> EvalReport:
    per_benchmark, closed_by, distributions, details, pairwise = {}, {}, {}, {}, {}
    values = [float(value) for value in config.score_values]
    for name, rows in benchmarks.items():
        chosen = [records[row_key(name, row)] for row in rows]
        predicted, truth = [r["score"] for r in chosen], [r["ground_truth"] for r in chosen]
        per_benchmark[name] = score_metrics(predicted, truth)
        closed_by[name] = dict(Counter(reason for record in chosen for reason in record["closed_by"]))
        groups = row_groups([row.source_id for row in rows], [row.row for row in rows])
        distributions[name] = metric_distribution(predicted, truth, groups)
        pairs = pairwise_agreement(chosen, groups, values)
        if pairs is not None:
            pairwise[name] = pairs
        details[name] = {
            "questions": len(set(groups)),
            "undefined_resamples": undefined_resamples(distributions[name]),
            "rows": [list(row_key(name, row)[1:]) for row in rows],
        }
    intervals = {name: intervals_of(distribution) for name, distribution in distributions.items()}
    intervals["average"] = intervals_of(np.mean(list(distributions.values()), axis=0))
    titles = {name: get_benchmark_spec(name).title for name in benchmarks}
    table = format_table({config.display_name: per_benchmark}, titles, {config.display_name: intervals})
    report = EvalReport(
        config.display_name,
        per_benchmark,
        average_metrics(per_benchmark),
        table,
        closed_by,
        output_dir,
        intervals,
        pairwise,
    )
    _write_metrics(config, report, details)
    return report


def score_definition(config: EvalConfig) -> str:
    """What the evaluated scores are: the paper's Eq. 3 unless ``renormalize_scores`` (``judge/grade.py``)."""
    if config.renormalize_scores:
        return "Scores: expected score renormalised over the score tokens (renormalize_scores: true)."
    return (
        "Scores: the paper's expected score (Eq. 3), sum_y y * p(y) under the full-vocabulary softmax, not "
        "renormalised (tract judge/serve and the API report it as score_unnormalized beside a score on the scale)."
    )


def describe_forced_cots(closed_by: dict[str, dict[str, int]]) -> str:
    """One line per benchmark: how many CoTs did not end with the delimiter and were closed by force."""
    lines = []
    for name, counts in closed_by.items():
        if not counts:
            continue
        total = sum(counts.values())
        forced = total - counts.get(CLOSED_BY_DELIMITER, 0)
        detail = ", ".join(f"{reason}: {count}" for reason, count in sorted(counts.items()))
        lines.append(f"{name}: {forced} of {total} CoTs closed without the delimiter ({detail})")
    return "\n".join(lines)


def _write_metrics(config: EvalConfig, report: EvalReport, details: dict[str, dict[str, Any]]) -> None:
    """``metrics.json`` (with the intervals, and each benchmark's rows for ``tract report compare``) and
    ``metrics.csv``."""
    report.output_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        "run_name": report.run_name,
        "predictor": config.predictor,
        "config_hash": config.prediction_hash(),
        "benchmarks": report.per_benchmark,
        "average": report.average,
        "intervals": {
            name: {metric: list(bounds) for metric, bounds in by_metric.items()}
            for name, by_metric in report.intervals.items()
        },
        "interval_method": f"{int(CONFIDENCE * 100)}% {METHOD}",
        "score_definition": score_definition(config),
        "pairwise": {name: result.to_dict() for name, result in report.pairwise.items()},
        "benchmark_rows": details,
        "cot_closed_by": report.closed_by,
    }
    (report.output_dir / METRICS_JSON).write_text(json.dumps(_json_safe(payload), indent=2) + "\n")
    bounds = [f"{name}_{end}" for name in AVERAGED for end in ("low", "high")]
    columns = ["run", "benchmark", "n", *AVERAGED, *bounds, *(f"{name}_p" for name in AVERAGED if name != "rmse")]
    with (report.output_dir / METRICS_CSV).open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for name, metrics in [*report.per_benchmark.items(), ("average", report.average)]:
            interval = {
                f"{metric}_{end}": value
                for metric, (low, high) in report.intervals[name].items()
                for end, value in (("low", low), ("high", high))
            }
            writer.writerow({"run": report.run_name, "benchmark": name, **metrics, **interval})


def _json_safe(value: Any) -> Any:
    """NaN (a correlation with a constant side) becomes null, which strict JSON readers accept."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_safe(item) for item in value]
    return value


def load_report(output_dir: Path) -> EvalReport:
    """The report of a finished evaluation, read back from its ``metrics.json`` (e.g. after a child process)."""
    metrics = json.loads((Path(output_dir) / METRICS_JSON).read_text())
    per_benchmark = {name: _nan_for_null(values) for name, values in metrics["benchmarks"].items()}
    intervals = {
        name: {
            metric: tuple(math.nan if end is None else end for end in bounds) for metric, bounds in by_metric.items()
        }
        for name, by_metric in metrics.get("intervals", {}).items()
    }
    titles = {name: get_benchmark_spec(name).title for name in per_benchmark}
    return EvalReport(
        metrics["run_name"],
        per_benchmark,
        _nan_for_null(metrics["average"]),
        format_table({metrics["run_name"]: per_benchmark}, titles, {metrics["run_name"]: intervals}),
        metrics["cot_closed_by"],
        Path(output_dir),
        intervals,
    )


def _nan_for_null(metrics: dict[str, Any]) -> dict[str, float]:
    return {name: math.nan if value is None else value for name, value in metrics.items()}
