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

"""``tract report curve``: the paper's Figure 2 (metric vs. lambda) and Figure 3 (metric vs. n_cot) from finished runs.

Each point is one finished evaluation folder (``metrics.json`` as ``tract eval`` writes it). Its x value
is read from the configuration the pipeline recorded beside it: ``<eval>.yaml`` (``n_cot``), then the
run's ``stage2.yaml`` / ``stage1.yaml`` (``raft_lambda``). Runs are grouped into series by predictor;
runs with the same series and x (other seeds) give the mean and the standard deviation (the shaded
band of Figure 3). Output: a table on the console and in ``<output>.txt``, and ``<output>.png``.
"""

import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from llamafactory_tract.eval.evaluate import METRICS_JSON
from llamafactory_tract.eval.metrics import AVERAGED, SYMBOLS
from llamafactory_tract.extras.errors import TractUserError

SETTING_FILES = ("{eval}.yaml", "stage2.yaml", "stage1.yaml")


class ReportError(TractUserError):
    """A run folder is not a finished evaluation, or lacks the setting to plot; the message names it."""


@dataclass(frozen=True)
class CurvePoint:
    series: str
    x: float
    value: float
    run: Path


def run_setting(eval_dir: Path, key: str) -> float:
    """``key`` from the first recorded config beside ``eval_dir`` that sets it."""
    candidates = [
        eval_dir.with_name(name.format(eval=eval_dir.name)) if "{eval}" in name else eval_dir.parent / name
        for name in SETTING_FILES
    ]
    for path in candidates:
        if path.is_file():
            config = yaml.safe_load(path.read_text()) or {}
            if key in config:
                return float(config[key])
    raise ReportError(f"{eval_dir}: none of {', '.join(map(str, candidates))} sets `{key}`.")


def curve_points(eval_dirs: list[Path], x_key: str, metric: str) -> list[CurvePoint]:
    if metric not in AVERAGED:
        raise ReportError(f"Unknown metric {metric!r}; choose one of {', '.join(AVERAGED)}.")
    points = []
    for eval_dir in eval_dirs:
        metrics_path = eval_dir / METRICS_JSON
        if not metrics_path.is_file():
            raise ReportError(f"{eval_dir} has no {METRICS_JSON}: not a finished `tract eval` / pipeline evaluation.")
        metrics = json.loads(metrics_path.read_text())
        value = metrics["average"].get(metric)
        value = math.nan if value is None else float(value)
        points.append(CurvePoint(metrics["predictor"], run_setting(eval_dir, x_key), value, eval_dir))
    return points


def summarize(points: list[CurvePoint]) -> dict[str, list[tuple[float, float, float, int]]]:
    """series -> sorted (x, mean, std, runs)."""
    grouped: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for point in points:
        grouped[point.series][point.x].append(point.value)
    return {
        series: [(x, float(np.mean(v)), float(np.std(v)), len(v)) for x, v in sorted(by_x.items())]
        for series, by_x in grouped.items()
    }


def format_curve_table(summary: dict[str, list[tuple[float, float, float, int]]], x_key: str, metric: str) -> str:
    header = f"{'series':<12} {x_key:>11} {SYMBOLS[metric] + ' (avg)':>11} {'std':>7} {'runs':>5}"
    rows = [
        f"{series:<12} {x:>11g} {mean:>11.3f} {std:>7.3f} {count:>5d}"
        for series, values in summary.items()
        for x, mean, std, count in values
    ]
    return "\n".join([header, "-" * len(header), *rows])


def plot_curve(summary: dict[str, list[tuple[float, float, float, int]]], x_key: str, metric: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 3.5))
    for series, values in summary.items():
        x, mean, std = (np.array([item[i] for item in values]) for i in range(3))
        axis.plot(x, mean, marker="o", label=series)
        axis.fill_between(x, mean - std, mean + std, alpha=0.2)
    if x_key == "raft_lambda":
        axis.set_xscale("log")
    axis.set_xlabel(x_key)
    axis.set_ylabel(f"average {SYMBOLS[metric]}")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=150)
    plt.close(figure)


def write_curve_report(eval_dirs: list[Path], x_key: str, metric: str, output: Path) -> str:
    """The table (returned, and saved as ``output.txt``) and the plot ``output.png``."""
    summary = summarize(curve_points(eval_dirs, x_key, metric))
    table = format_curve_table(summary, x_key, metric)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".txt").write_text(table + "\n")
    plot_curve(summary, x_key, metric, output.with_suffix(".png"))
    return table
