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

"""Bootstrap intervals over questions: checked against the exact bootstrap distribution of a small case."""

import itertools
import math

import numpy as np
import pytest

from llamafactory_tract.eval.intervals import (
    N_RESAMPLES,
    intervals_of,
    metric_distribution,
    metric_vector,
    paired_distribution,
    percentile_interval,
    row_groups,
    undefined_resamples,
)
from llamafactory_tract.eval.metrics import AVERAGED, score_metrics

# Four questions with two responses each.
TRUTH = np.array([1, 2, 3, 3, 5, 4, 2, 5.0])
PREDICTED = np.array([1, 3, 3, 2, 2, 4, 2, 1.0])
GROUPS = ["q1", "q1", "q2", "q2", "q3", "q3", "q4", "q4"]


def test_rmse_interval_is_the_exact_bootstrap_quantiles_of_a_hand_enumerated_case():
    # By hand: the questions' mean squared errors are 0.5, 0.5, 4.5 and 8. A resample draws 4 questions with
    # replacement (4^4 equally likely ordered draws) and, every question having two rows, its RMSE is the
    # square root of the mean of the drawn questions' MSEs.
    mse = [0.5, 0.5, 4.5, 8.0]
    exact = np.sort([math.sqrt(np.mean([mse[q] for q in draw])) for draw in itertools.product(range(4), repeat=4)])
    low, high = np.quantile(exact, [0.025, 0.975], method="inverted_cdf")
    assert (low, high) == pytest.approx((math.sqrt(0.5), 2.5))  # 16/256 of the draws sit at the lowest value
    distribution = metric_distribution(PREDICTED, TRUTH, GROUPS)
    assert intervals_of(distribution)["rmse"] == pytest.approx((low, high))
    # The resampled RMSEs are the exact atoms, with the exact frequencies (within 4 standard errors).
    rmse = distribution[AVERAGED.index("rmse")]
    assert set(np.round(rmse, 9)) <= set(np.round(exact, 9))
    for value, count in zip(*np.unique(exact, return_counts=True), strict=True):
        probability = count / exact.size
        observed = np.mean(np.isclose(rmse, value))
        assert abs(observed - probability) < 4 * math.sqrt(probability * (1 - probability) / N_RESAMPLES)


def test_whole_questions_are_resampled_not_rows():
    # Four identical responses per question carry no more information than one: the interval is the same
    # as for one row per question (the same questions are drawn), where row resampling would narrow it.
    rng = np.random.default_rng(3)
    truth, predicted = rng.integers(1, 6, 12).astype(float), rng.normal(3, 1, 12)
    one_each = intervals_of(metric_distribution(predicted, truth, list(range(12))))
    repeated = intervals_of(metric_distribution(np.repeat(predicted, 4), np.repeat(truth, 4), np.repeat(range(12), 4)))
    assert np.ravel([repeated[name] for name in AVERAGED]) == pytest.approx(np.ravel([one_each[n] for n in AVERAGED]))
    as_rows = intervals_of(metric_distribution(np.repeat(predicted, 4), np.repeat(truth, 4), list(range(48))))
    assert as_rows["pearson"][1] - as_rows["pearson"][0] < 0.7 * (one_each["pearson"][1] - one_each["pearson"][0])


def test_point_metrics_are_the_table_metrics():
    rng = np.random.default_rng(0)
    truth, predicted = rng.integers(1, 6, 30).astype(float), rng.normal(3, 1, 30)
    reference = score_metrics(predicted, truth)
    assert metric_vector(predicted, truth) == pytest.approx([reference[name] for name in AVERAGED])


def test_resamples_with_a_constant_side_are_counted_and_left_out():
    # q2's labels are constant, so a resample of q2 alone has no correlation.
    distribution = metric_distribution(PREDICTED, TRUTH, GROUPS)
    undefined = undefined_resamples(distribution)
    assert set(undefined) == {"pearson", "spearman", "kendall"} and 0 < undefined["pearson"] < N_RESAMPLES // 50
    assert not any(math.isnan(end) for end in intervals_of(distribution)["pearson"])
    ((low, high),) = percentile_interval(np.full((1, 5), math.nan))
    assert math.isnan(low) and math.isnan(high)


def test_paired_difference_of_a_judge_with_itself_is_zero_and_a_better_judge_is_resolved():
    same = percentile_interval(paired_distribution(PREDICTED, PREDICTED, TRUTH, GROUPS))
    assert all(low == high == 0 or math.isnan(low) for low, high in same)
    rng = np.random.default_rng(1)
    truth = rng.integers(1, 6, 80).astype(float)
    groups = np.repeat(range(20), 4)
    good, poor = truth + rng.normal(0, 0.5, 80), truth + rng.normal(0, 2.0, 80)
    pearson, _, _, rmse = percentile_interval(paired_distribution(good, poor, truth, groups))
    assert pearson[0] > 0 and rmse[1] < 0


def test_rows_without_a_question_id_are_their_own_question():
    assert row_groups(["7", None, "7"], [0, 1, 2]) == [("question", "7"), ("row", 1), ("question", "7")]


def test_one_question_has_no_interval():
    distribution = metric_distribution([1.0, 2.0], [2.0, 3.0], ["q", "q"])
    assert all(math.isnan(low) and math.isnan(high) for low, high in intervals_of(distribution).values())
