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

"""Relative grades: P(A better), P(tie), P(B better) and the score difference from two absolute grades."""

import csv
import json

import numpy as np
import pytest

from llamafactory_tract.cli import main
from llamafactory_tract.judge.api import TractJudge
from llamafactory_tract.judge.relative import preference, score_distribution
from tests.helpers.judge import FAMILY, ROWS, RUBRIC, settings_overrides, tiny_judge

VALUES = [1.0, 2.0, 3.0, 4.0, 5.0]


def test_preference_by_hand():
    five, three = np.eye(5)[4], np.eye(5)[2]
    assert preference(five, three, VALUES) == (1.0, 0.0, 0.0)
    uniform = np.full(5, 0.2)
    assert preference(uniform, uniform, VALUES) == pytest.approx((0.4, 0.2, 0.4))
    # A: 2 or 4 evenly; B: 3. A wins when it draws 4, loses when it draws 2.
    assert preference(np.array([0, 0.5, 0, 0.5, 0]), three, VALUES) == pytest.approx((0.5, 0.0, 0.5))


def test_score_distribution_is_the_mean_of_renormalised_cot_distributions():
    cots = [{"1": 0.1, "2": 0.1, "3": 0.0, "4": 0.0, "5": 0.0}, {"1": 0.0, "2": 0.0, "3": 0.0, "4": 0.0, "5": 0.5}]
    assert score_distribution(cots) == pytest.approx([0.25, 0.25, 0.0, 0.0, 0.5])


@pytest.fixture(scope="module")
def judge(tiny_model_dirs) -> TractJudge:
    return tiny_judge(*tiny_model_dirs[FAMILY])


def test_a_relative_grade_is_the_comparison_of_the_two_absolute_grades_and_is_symmetric(judge):
    instructions = [ROWS[0]["instruction"], ROWS[1]["instruction"]]
    a, b = [ROWS[0]["response"], ROWS[1]["response"]], ["12 + 345 = 4.", "A chair."]
    pairs = judge.relative_grade(instructions=instructions, responses_a=a, responses_b=b, rubric=RUBRIC)
    grades_a = judge.absolute_grade(instructions=instructions, responses=a, rubric=RUBRIC)
    grades_b = judge.absolute_grade(instructions=instructions, responses=b, rubric=RUBRIC)
    swapped = judge.relative_grade(instructions=instructions, responses_a=b, responses_b=a, rubric=RUBRIC)
    for pair, grade_a, grade_b, back in zip(pairs, grades_a, grades_b, swapped, strict=True):
        assert pair.p_a_better + pair.p_tie + pair.p_b_better == pytest.approx(1.0)
        assert pair.score_difference == pytest.approx(grade_a.score - grade_b.score, abs=1e-5)
        assert pair.grade_a.cots == grade_a.cots and pair.grade_b.cots == grade_b.cots
        expected = preference(score_distribution(grade_a.score_probs), score_distribution(grade_b.score_probs), VALUES)
        assert (pair.p_a_better, pair.p_tie, pair.p_b_better) == pytest.approx(expected, abs=1e-5)
        assert (back.p_a_better, back.p_b_better) == pytest.approx((pair.p_b_better, pair.p_a_better), abs=1e-5)
        assert back.score_difference == pytest.approx(-pair.score_difference, abs=1e-5)
    single = judge.single_relative_grade(instructions[0], a[0], b[0], RUBRIC)
    assert single.p_a_better == pytest.approx(pairs[0].p_a_better, abs=1e-5)
    with pytest.raises(ValueError, match="`responses_a` / `responses_b` have 2 / 1 entries for 2 instructions"):
        judge.relative_grade(instructions=instructions, responses_a=a, responses_b=b[:1], rubric=RUBRIC)


def test_tract_judge_grades_pairs_from_response_a_and_response_b_columns(judge, tiny_model_dirs, tmp_path, capsys):
    model_dir, template = tiny_model_dirs[FAMILY]
    rows = [
        {"id": "p0", "q": ROWS[0]["instruction"], "first": ROWS[0]["response"], "second": "12 + 345 = 4."},
        {"id": "p1", "q": ROWS[1]["instruction"], "first": "", "second": "A chair."},  # skipped: no response_a
        {"id": "p2", "q": ROWS[1]["instruction"], "first": ROWS[1]["response"], "second": "A chair."},
    ]
    source = tmp_path / "pairs.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    output = tmp_path / "pairs.csv"
    columns = ["columns.instruction=q", "columns.response_a=first", "columns.response_b=second"]
    command = ["judge", *settings_overrides(model_dir, template), f"input={source}", f"output={output}", *columns]
    assert main([*command, "rubric=Is the answer right?", "keep_columns=[id]"]) == 0
    printed = capsys.readouterr().out
    assert "Graded 2 rows" in printed and "Mean P(A better)" in printed
    assert "Skipped 1 rows: row 1: `first` is empty" in printed
    graded = list(csv.DictReader(output.open()))
    assert [(line["row"], line["id"]) for line in graded] == [("0", "p0"), ("2", "p2")]
    expected = judge.relative_grade(
        instructions=[rows[0]["q"], rows[2]["q"]],
        responses_a=[rows[0]["first"], rows[2]["first"]],
        responses_b=[rows[0]["second"], rows[2]["second"]],
        rubric="Is the answer right?",
    )
    for line, pair in zip(graded, expected, strict=True):
        found = [float(line[key]) for key in ("p_a_better", "p_tie", "p_b_better", "score_difference")]
        assert found == pytest.approx([pair.p_a_better, pair.p_tie, pair.p_b_better, pair.score_difference], abs=1e-5)
        assert float(line["a_score"]) == pytest.approx(pair.grade_a.score, abs=1e-5)
        assert [line["b_cot_1"], line["b_cot_2"]] == pair.grade_b.cots
