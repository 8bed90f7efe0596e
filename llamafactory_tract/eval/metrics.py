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

"""Agreement of predicted and ground-truth scores (Table 2: Pearson r, Spearman rho; Table 8: Kendall tau).

Correlations come from scipy, with p-values; RMSE is added because a regression-aware judge is
also meant to be calibrated. The average row is the mean over benchmarks, as in the paper.
"""

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

CORRELATIONS = ("pearson", "spearman", "kendall")
AVERAGED = (*CORRELATIONS, "rmse")
SYMBOLS = {"pearson": "r", "spearman": "rho", "kendall": "tau", "rmse": "RMSE"}
INTERVAL_LABEL = "  95% interval"


def score_metrics(predictions: Sequence[float], targets: Sequence[float]) -> dict[str, float]:
    """Pearson/Spearman/Kendall with p-values, RMSE and n; a correlation is NaN when either side is constant."""
    predicted = np.asarray(predictions, dtype=float)
    truth = np.asarray(targets, dtype=float)
    if predicted.shape != truth.shape or predicted.ndim != 1:
        raise ValueError(f"predictions {predicted.shape} and targets {truth.shape} must be 1-D of equal length.")
    metrics: dict[str, float] = {"n": int(predicted.size)}
    degenerate = predicted.size < 2 or np.ptp(predicted) == 0 or np.ptp(truth) == 0
    for name, function in (("pearson", stats.pearsonr), ("spearman", stats.spearmanr), ("kendall", stats.kendalltau)):
        if degenerate:
            metrics[name], metrics[f"{name}_p"] = math.nan, math.nan
        else:
            result = function(predicted, truth)
            metrics[name], metrics[f"{name}_p"] = float(result.statistic), float(result.pvalue)
    metrics["rmse"] = float(np.sqrt(np.mean((predicted - truth) ** 2))) if predicted.size else math.nan
    return metrics


def average_metrics(per_benchmark: dict[str, dict[str, float]]) -> dict[str, float]:
    """The 'Average' column: the unweighted mean of each metric over benchmarks."""
    return {name: float(np.mean([metrics[name] for metrics in per_benchmark.values()])) for name in AVERAGED}


def format_table(
    runs: dict[str, dict[str, dict[str, float]]],
    titles: dict[str, str],
    intervals: dict[str, dict[str, dict[str, Sequence[float]]]] | None = None,
) -> str:
    """Table 2 layout: one row per run, a column group per benchmark and the average (r, rho, tau, RMSE).

    ``runs`` maps a run name to its per-benchmark metrics; every run must cover the same benchmarks.
    ``intervals`` (run -> benchmark or ``average`` -> metric -> (low, high)) adds a 95% interval row
    under each run that has them.
    """
    intervals = intervals or {}
    benchmark_names = list(next(iter(runs.values())))
    groups = [titles.get(name, name) for name in benchmark_names] + ["Average"]
    cell = 14 if any(intervals.values()) else 7
    first = max(len("Run"), *(len(name) for name in runs), *([len(INTERVAL_LABEL)] if cell > 7 else []))
    group_width = len(AVERAGED) * (cell + 1) - 1
    header = " | ".join([f"{'':<{first}}", *(f"{title:^{group_width}}" for title in groups)])
    symbols = " ".join(f"{SYMBOLS[name]:>{cell}}" for name in AVERAGED)
    subheader = " | ".join([f"{'Run':<{first}}", *([symbols] * len(groups))])
    rule = "-" * len(header)
    rows = []
    for run_name, per_benchmark in runs.items():
        columns = [per_benchmark[name] for name in benchmark_names] + [average_metrics(per_benchmark)]
        values = [" ".join(f"{metrics[name]:>{cell}.3f}" for name in AVERAGED) for metrics in columns]
        rows.append(" | ".join([f"{run_name:<{first}}", *values]))
        run_intervals = intervals.get(run_name)
        if run_intervals:
            bounds = [
                " ".join(f"{format_interval(run_intervals[name][metric]):>{cell}}" for metric in AVERAGED)
                for name in [*benchmark_names, "average"]
            ]
            rows.append(" | ".join([f"{INTERVAL_LABEL:<{first}}", *bounds]))
    return "\n".join([rule, header, subheader, rule, *rows, rule])


def format_interval(interval: Sequence[float]) -> str:
    """``[low,high]`` with two decimals; ``n/a`` when the metric was undefined on every resample."""
    low, high = interval
    return "n/a" if math.isnan(low) else f"[{low:.2f},{high:.2f}]"
