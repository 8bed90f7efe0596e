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

"""95% bootstrap intervals for the Table 2 metrics, resampling questions rather than rows.

The Prometheus benchmarks hold four responses per question, and responses to one question are graded
alike, so rows are not independent: resampling rows would give intervals that are too narrow. Every
resample draws whole questions (a row without a question id is its own question) with scipy's
bootstrap at a fixed seed, and an interval is the percentile interval of the resampled metric. A
difference between two judges is bootstrapped on the same resampled questions for both (paired), which
cancels the part of the noise the two share. Resamples where a correlation is undefined (one side
constant) are left out of that correlation's interval and counted.
"""

import math
import warnings
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from llamafactory_tract.eval.metrics import AVERAGED

CONFIDENCE = 0.95
N_RESAMPLES = 2000
SEED = 0
METHOD = f"percentile bootstrap over questions, {N_RESAMPLES} resamples, seed {SEED}"

Interval = tuple[float, float]


@dataclass(frozen=True)
class Difference:
    """``a - b`` for one metric, with its paired interval; ``resolved`` when the interval excludes 0."""

    a: float
    b: float
    low: float
    high: float

    @property
    def estimate(self) -> float:
        return self.a - self.b

    @property
    def resolved(self) -> bool:
        return self.low > 0 or self.high < 0


def metric_vector(predictions: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Pearson, Spearman, Kendall (tau-b) and RMSE, in ``AVERAGED`` order, as ``score_metrics`` computes them."""
    rmse = float(np.sqrt(np.mean((predictions - targets) ** 2)))
    if predictions.size < 2 or np.ptp(predictions) == 0 or np.ptp(targets) == 0:
        return np.array([math.nan, math.nan, math.nan, rmse])
    pearson = np.corrcoef(predictions, targets)[0, 1]
    spearman = np.corrcoef(stats.rankdata(predictions), stats.rankdata(targets))[0, 1]
    kendall = stats.kendalltau(predictions, targets).statistic
    return np.array([pearson, spearman, kendall, rmse])


def question_bootstrap(statistic: Callable[[np.ndarray], np.ndarray], groups: Sequence[Hashable]) -> np.ndarray:
    """The bootstrap distribution, shape [statistics, resamples], of ``statistic(row indices)``.

    Each resample draws ``len(set(groups))`` questions with replacement and passes the rows of every
    drawn question (a question drawn twice contributes its rows twice). One question has no spread to
    resample: every statistic is then undefined.
    """
    rows_of: dict[Hashable, list[int]] = {}
    for row, group in enumerate(groups):
        rows_of.setdefault(group, []).append(row)
    members = [np.asarray(rows) for rows in rows_of.values()]

    def resampled(questions: np.ndarray) -> np.ndarray:
        return statistic(np.concatenate([members[question] for question in questions]))

    if len(members) < 2:
        return np.full((np.size(resampled(np.arange(len(members)))), N_RESAMPLES), math.nan)

    with warnings.catch_warnings():  # undefined resamples are counted by the caller (undefined_resamples)
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        result = stats.bootstrap(
            (np.arange(len(members)),),
            resampled,
            n_resamples=N_RESAMPLES,
            vectorized=False,
            method="percentile",
            confidence_level=CONFIDENCE,
            rng=SEED,
        )
    return np.atleast_2d(result.bootstrap_distribution)


def percentile_interval(distribution: np.ndarray) -> list[Interval]:
    """One (low, high) per statistic; resamples where it is undefined are left out (NaN if all are)."""
    tail = 100 * (1 - CONFIDENCE) / 2
    intervals = []
    for values in distribution:
        defined = values[~np.isnan(values)]
        if defined.size == 0:
            intervals.append((math.nan, math.nan))
        else:
            low, high = np.percentile(defined, [tail, 100 - tail])
            intervals.append((float(low), float(high)))
    return intervals


def metric_distribution(
    predictions: Sequence[float], targets: Sequence[float], groups: Sequence[Hashable]
) -> np.ndarray:
    """[len(AVERAGED), N_RESAMPLES]: each metric on each question resample."""
    predicted, truth = np.asarray(predictions, dtype=float), np.asarray(targets, dtype=float)
    return question_bootstrap(lambda rows: metric_vector(predicted[rows], truth[rows]), groups)


def intervals_of(distribution: np.ndarray) -> dict[str, Interval]:
    return dict(zip(AVERAGED, percentile_interval(distribution), strict=True))


def undefined_resamples(distribution: np.ndarray) -> dict[str, int]:
    """How many resamples left each metric undefined (only metrics with some)."""
    counts = {name: int(np.isnan(values).sum()) for name, values in zip(AVERAGED, distribution, strict=True)}
    return {name: count for name, count in counts.items() if count}


def paired_distribution(
    predictions_a: Sequence[float],
    predictions_b: Sequence[float],
    targets: Sequence[float],
    groups: Sequence[Hashable],
) -> np.ndarray:
    """[len(AVERAGED), N_RESAMPLES] of metric(a) - metric(b), each resample drawing the same questions for both."""
    a, b = np.asarray(predictions_a, dtype=float), np.asarray(predictions_b, dtype=float)
    truth = np.asarray(targets, dtype=float)
    return question_bootstrap(
        lambda rows: metric_vector(a[rows], truth[rows]) - metric_vector(b[rows], truth[rows]), groups
    )


def row_groups(source_ids: Sequence[Hashable | None], rows: Sequence[int]) -> list[Hashable]:
    """The question of each row: its source id (Prometheus ``idx``), else the row itself."""
    return [
        ("question", source) if source is not None else ("row", row)
        for source, row in zip(source_ids, rows, strict=True)
    ]
