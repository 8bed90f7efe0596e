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

"""``tract report compare RUN_A RUN_B``: the difference between two judges on the same rows, with its interval.

Both folders are finished evaluations. The rows each run's metrics were computed on are read from its
``metrics.json`` and their predictions from its ``predictions.jsonl`` (only those of the configuration
that wrote the metrics); the two runs must have scored the same rows with the same labels, else the
difference would mix judges with data. Per benchmark and for the average, each metric's difference
A - B gets a paired 95% bootstrap interval over questions (``eval/intervals.py``).
"""

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llamafactory_tract.eval.datasets import get_benchmark_spec
from llamafactory_tract.eval.evaluate import METRICS_JSON, PREDICTIONS_FILE
from llamafactory_tract.eval.intervals import (
    CONFIDENCE,
    METHOD,
    Difference,
    metric_vector,
    paired_distribution,
    percentile_interval,
    row_groups,
)
from llamafactory_tract.eval.metrics import AVERAGED, SYMBOLS
from llamafactory_tract.extras.errors import TractUserError
from llamafactory_tract.judge.prediction_store import PredictionStore

LOWER_IS_BETTER = {"rmse"}


class CompareError(TractUserError):
    """The two runs cannot be compared (not finished, no rows in common); the message names the folder."""


@dataclass(frozen=True)
class ScoredRows:
    """One run's predictions on one benchmark, in the order of its metrics rows."""

    keys: list[tuple[int, str]]
    scores: list[float]
    truth: list[float]
    groups: list[Any]


@dataclass
class Comparison:
    run_a: str
    run_b: str
    rows: dict[str, int]
    differences: dict[str, dict[str, Difference]]
    """benchmark (and ``average``) -> metric -> A - B with its interval."""


def load_scored_rows(eval_dir: Path) -> tuple[str, dict[str, ScoredRows]]:
    """(run name, benchmark -> its scored rows) of a finished evaluation folder."""
    metrics_path = eval_dir / METRICS_JSON
    if not metrics_path.is_file():
        raise CompareError(f"{eval_dir} has no {METRICS_JSON}: not a finished `tract eval` / pipeline evaluation.")
    metrics = json.loads(metrics_path.read_text())
    if "benchmark_rows" not in metrics:
        raise CompareError(
            f"{metrics_path} does not list the rows it was computed on (written by an older version): run the "
            "same `tract eval` again; it reuses every stored prediction and rewrites the metrics."
        )
    records = PredictionStore(eval_dir / PREDICTIONS_FILE, metrics["config_hash"]).load()
    scored = {}
    for benchmark, detail in metrics["benchmark_rows"].items():
        keys = [(int(row), str(digest)) for row, digest in detail["rows"]]
        missing = [row for row, digest in keys if (benchmark, row, digest) not in records]
        if missing:
            raise CompareError(
                f"{eval_dir / PREDICTIONS_FILE}: {len(missing)} {benchmark} rows its metrics used have no prediction "
                f"of the same configuration (first rows: {missing[:10]}); run the evaluation again."
            )
        chosen = [records[(benchmark, row, digest)] for row, digest in keys]
        scored[benchmark] = ScoredRows(
            keys,
            [record["score"] for record in chosen],
            [record["ground_truth"] for record in chosen],
            row_groups([record.get("source_id") for record in chosen], [row for row, _ in keys]),
        )
    return metrics["run_name"], scored


def compare_runs(dir_a: Path, dir_b: Path) -> Comparison:
    """A - B per common benchmark and on average; refuses benchmarks whose rows or labels differ."""
    name_a, rows_a = load_scored_rows(dir_a)
    name_b, rows_b = load_scored_rows(dir_b)
    common = [benchmark for benchmark in rows_a if benchmark in rows_b]
    if not common:
        raise CompareError(
            f"{dir_a} ({', '.join(rows_a)}) and {dir_b} ({', '.join(rows_b)}) share no benchmark; nothing to compare."
        )
    differences, distributions, counts = {}, [], {}
    for benchmark in common:
        a, b = rows_a[benchmark], rows_b[benchmark]
        if set(a.keys) != set(b.keys):
            only_a, only_b = len(set(a.keys) - set(b.keys)), len(set(b.keys) - set(a.keys))
            raise CompareError(
                f"{benchmark}: the runs scored different rows or labels ({only_a} only in {dir_a}, {only_b} only in "
                f"{dir_b}); compare runs evaluated on the same benchmark file with the same `limit`."
            )
        b_scores = dict(zip(b.keys, b.scores, strict=True))
        aligned_b = [b_scores[key] for key in a.keys]
        distribution = paired_distribution(a.scores, aligned_b, a.truth, a.groups)
        distributions.append(distribution)
        differences[benchmark] = _differences(_point(a.scores, a.truth), _point(aligned_b, a.truth), distribution)
        counts[benchmark] = len(a.keys)
    if len(common) > 1:
        mean_a = np.mean([[d.a for d in differences[name].values()] for name in common], axis=0)
        mean_b = np.mean([[d.b for d in differences[name].values()] for name in common], axis=0)
        differences["average"] = _differences(mean_a, mean_b, np.mean(distributions, axis=0))
    return Comparison(name_a, name_b, counts, differences)


def _point(predictions: list[float], truth: list[float]) -> np.ndarray:
    return metric_vector(np.asarray(predictions, dtype=float), np.asarray(truth, dtype=float))


def _differences(values_a: np.ndarray, values_b: np.ndarray, distribution: np.ndarray) -> dict[str, Difference]:
    return {
        name: Difference(float(a), float(b), low, high)
        for name, a, b, (low, high) in zip(
            AVERAGED, values_a, values_b, percentile_interval(distribution), strict=True
        )
    }


def verdict(metric: str, difference: Difference, name_a: str = "A", name_b: str = "B") -> str:
    """Which run is better by this metric, or that the interval includes no difference."""
    if math.isnan(difference.low) or not difference.resolved:
        return "not resolved"
    a_better = difference.high < 0 if metric in LOWER_IS_BETTER else difference.low > 0
    return f"{name_a if a_better else name_b} better"


def format_comparison(comparison: Comparison) -> str:
    """One line per benchmark and metric: A, B, A - B, its interval and which run is better."""
    interval = f"{int(CONFIDENCE * 100)}% interval"
    header = f"{'benchmark':<14} {'metric':>6} {'A':>8} {'B':>8} {'A - B':>8}  {interval:<17} verdict"
    lines = [f"A = {comparison.run_a}", f"B = {comparison.run_b}", "-" * 86, header, "-" * 86]
    for benchmark, by_metric in comparison.differences.items():
        title = "Average" if benchmark == "average" else get_benchmark_spec(benchmark).title
        for metric, difference in by_metric.items():
            interval = "n/a" if math.isnan(difference.low) else f"[{difference.low:+.3f}, {difference.high:+.3f}]"
            lines.append(
                f"{title:<14} {SYMBOLS[metric]:>6} {difference.a:>8.3f} {difference.b:>8.3f} "
                f"{difference.estimate:>+8.3f}  {interval:<17} {verdict(metric, difference)}"
            )
    rows = ", ".join(f"{name}: {count}" for name, count in comparison.rows.items())
    lines += [
        "-" * 86,
        f"Rows (the same in both runs): {rows}. Paired {METHOD}; not resolved: the interval includes 0.",
    ]
    return "\n".join(lines)


def write_comparison(comparison: Comparison, output: Path) -> str:
    """The table (returned, and saved as ``output.txt``) and ``output.json``."""
    table = format_comparison(comparison)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".txt").write_text(table + "\n")
    payload = {
        "run_a": comparison.run_a,
        "run_b": comparison.run_b,
        "rows": comparison.rows,
        "interval_method": f"{int(CONFIDENCE * 100)}% paired {METHOD}",
        "differences": {
            benchmark: {
                metric: {**_nulls(asdict(d)), "difference": _null(d.estimate), "verdict": verdict(metric, d)}
                for metric, d in by_metric.items()
            }
            for benchmark, by_metric in comparison.differences.items()
        },
    }
    output.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    return table


def _null(value: float) -> float | None:
    return None if math.isnan(value) else value


def _nulls(values: dict[str, float]) -> dict[str, float | None]:
    return {key: _null(value) for key, value in values.items()}
