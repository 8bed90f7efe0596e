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

"""Which of two responses is better: a relative grade from two absolute grades of the same judge.

A TRACT judge is trained to grade one response against a rubric, with a distribution over the score
values. Two responses to one instruction, graded separately with the same rubric, give two
distributions p_A and p_B (each the mean over its CoTs of the renormalised score distribution, so
its expectation is the grade's ``score``). Read as independent draws, P(A better) = sum over a > b of
p_A(a) p_B(b), P(tie) = sum over a of p_A(a) p_B(a), and the expected score difference is
score_A - score_B. Unlike prometheus-eval's relative prompt, which asks a model for "A" or "B", this
needs no second training task and says how sure the judge is, including how likely a tie is.
"""

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from llamafactory_tract.judge.grade import Grade


@dataclass
class RelativeGrade:
    p_a_better: float
    p_tie: float
    p_b_better: float
    score_difference: float
    """score_A - score_B: the expected score difference."""
    grade_a: Grade
    grade_b: Grade

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def score_distribution(score_probs: list[dict[str, float]]) -> np.ndarray:
    """The mean over CoTs of each CoT's distribution over the score values, renormalised to sum to 1."""
    rows = np.array([list(probs.values()) for probs in score_probs], dtype=float)
    masses = rows.sum(axis=1, keepdims=True)
    uniform = np.full_like(rows, 1.0 / rows.shape[1])
    return np.where(masses > 0, rows / np.where(masses > 0, masses, 1.0), uniform).mean(axis=0)


def preference(p_a: np.ndarray, p_b: np.ndarray, values: list[float]) -> tuple[float, float, float]:
    """(P(A better), P(tie), P(B better)) for independent draws from ``p_a`` and ``p_b`` over ``values``."""
    order = np.asarray(values, dtype=float)
    joint = np.outer(p_a, p_b)
    a_higher = order[:, None] > order[None, :]
    return float(joint[a_higher].sum()), float(np.trace(joint)), float(joint[a_higher.T].sum())


def relative_grade(grade_a: Grade, grade_b: Grade, values: list[float]) -> RelativeGrade:
    p_a_better, p_tie, p_b_better = preference(
        score_distribution(grade_a.score_probs), score_distribution(grade_b.score_probs), values
    )
    return RelativeGrade(p_a_better, p_tie, p_b_better, grade_a.score - grade_b.score, grade_a, grade_b)
