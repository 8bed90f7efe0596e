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

"""Pairwise agreement with GPT-4, against a hand computation."""

import pytest

from llamafactory_tract.eval.pairwise import format_pairwise, pairwise_agreement

VALUES = [1.0, 2.0, 3.0, 4.0, 5.0]


def record(ground_truth: float, score: float, probs: list[float]) -> dict:
    return {"ground_truth": ground_truth, "score": score, "score_probs": [dict(zip("12345", probs, strict=True))]}


def test_pairs_within_questions_that_gpt4_scored_differently_by_hand():
    four, two, three = [0, 0, 0, 1, 0], [0, 1, 0, 0, 0], [0, 0, 1, 0, 0]
    records = [
        record(5, 4.0, four),  # q1: GPT-4 5, 3, 3 -> pairs (0, 1) and (0, 2); (1, 2) is a GPT-4 tie
        record(3, 2.0, two),
        record(3, 4.5, [0, 0, 0, 0.5, 0.5]),
        record(2, 3.0, three),  # q2: GPT-4 2 and 4, the judge 3 and 3
        record(4, 3.0, three),
    ]
    result = pairwise_agreement(records, ["q1", "q1", "q1", "q2", "q2"], VALUES)
    # (0, 1): right sign, P(right order) 1. (0, 2): wrong sign, P = 0 + tie 0.5 / 2. (3, 4): equal, 0.5 and 0.5.
    assert (result.pairs, result.questions) == (3, 2)
    assert result.metrics == pytest.approx({"pair_accuracy": 1.5 / 3, "pair_p_correct": 1.75 / 3})
    low, high = result.intervals["pair_accuracy"]
    assert 0.0 <= low <= result.metrics["pair_accuracy"] <= high <= 1.0
    assert "Pairwise vs GPT-4, mt_bench: 3 pairs on 2 questions: pair_accuracy 0.500" in format_pairwise(
        {"mt_bench": result}
    )


def test_no_pair_when_gpt4_scored_every_response_of_a_question_alike():
    records = [record(4, 4.0, [0, 0, 0, 1, 0]), record(4, 2.0, [0, 1, 0, 0, 0])]
    assert pairwise_agreement(records, ["q", "q"], VALUES) is None
