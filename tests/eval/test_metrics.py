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

import math

import numpy as np
import pytest
from scipy import stats

from llamafactory_tract.eval.metrics import average_metrics, format_table, score_metrics

PREDICTED = [4.2, 3.1, 1.5, 4.9, 2.2, 3.3, 2.8]
TRUTH = [4.0, 3.3333, 1.0, 5.0, 2.6667, 2.0, 3.0]


def test_metrics_match_scipy_on_fixed_arrays():
    metrics = score_metrics(PREDICTED, TRUTH)
    pearson, spearman, kendall = (
        stats.pearsonr(PREDICTED, TRUTH),
        stats.spearmanr(PREDICTED, TRUTH),
        stats.kendalltau(PREDICTED, TRUTH),
    )
    assert metrics["n"] == 7
    assert metrics["pearson"] == pytest.approx(pearson.statistic) and metrics["pearson_p"] == pytest.approx(
        pearson.pvalue
    )
    assert metrics["spearman"] == pytest.approx(spearman.statistic) and metrics["spearman_p"] == pytest.approx(
        spearman.pvalue
    )
    assert metrics["kendall"] == pytest.approx(kendall.statistic) and metrics["kendall_p"] == pytest.approx(
        kendall.pvalue
    )
    assert metrics["rmse"] == pytest.approx(np.sqrt(np.mean((np.array(PREDICTED) - np.array(TRUTH)) ** 2)))
    assert metrics["pearson"] == pytest.approx(np.corrcoef(PREDICTED, TRUTH)[0, 1])


def test_constant_side_gives_nan_correlation_but_finite_rmse():
    metrics = score_metrics([3.0, 3.0, 3.0], [1.0, 2.0, 5.0])
    assert math.isnan(metrics["pearson"]) and math.isnan(metrics["kendall_p"])
    assert metrics["rmse"] == pytest.approx(math.sqrt((4 + 1 + 4) / 3))


def test_mismatched_lengths_are_rejected():
    with pytest.raises(ValueError, match="equal length"):
        score_metrics([1.0, 2.0], [1.0])


def test_average_row_and_table_layout():
    per_benchmark = {
        "vicuna_bench": score_metrics(PREDICTED, TRUTH),
        "mt_bench": score_metrics(TRUTH, PREDICTED[::-1]),
    }
    average = average_metrics(per_benchmark)
    expected = (per_benchmark["vicuna_bench"]["spearman"] + per_benchmark["mt_bench"]["spearman"]) / 2
    assert average["spearman"] == pytest.approx(expected)
    table = format_table({"TRACT": per_benchmark}, {"vicuna_bench": "Vic. Bench", "mt_bench": "MT Bench"})
    header, subheader, row = table.splitlines()[1], table.splitlines()[2], table.splitlines()[4]
    assert header.index("Vic. Bench") < header.index("MT Bench") < header.index("Average")
    assert subheader.count("rho") == 3 and subheader.count("tau") == 3
    assert row.startswith("TRACT") and f"{average['pearson']:.3f}" in row.split("|")[-1]
