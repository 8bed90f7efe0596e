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

"""A grade on the scale: the expected score over the score tokens, with how much mass they had.

The paper's expected score (Eq. 3) is sum_y y * p(y) under the full-vocabulary softmax. When the score
tokens do not hold all of the mass after ``So the overall score is`` (an untrained or barely trained
judge, a CoT closed by force), that sum falls below the lowest score: a "grade" of 0.4 on a 1-5 scale.
A judge's user wants a number on the scale, so ``score`` renormalises over the score tokens
(sum_y y * p(y) / sum_y p(y)), ``score_probs`` are the matching distribution (they sum to 1, and
sum_y y * prob_y is the CoT's score), and ``score_mass`` says how much the model actually put on them:
a low mass marks a grade to distrust (``low_score_mass``). ``score_unnormalized`` is the paper's
definition, the number ``tract eval`` reports.
"""

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from llamafactory_tract.judge.predictors import JudgePrediction

DEFAULT_MIN_SCORE_MASS = 0.5
"""Below this mass on the score tokens a grade is flagged: most of the model's mass went elsewhere."""


@dataclass
class Grade:
    """One graded row; the lists have one entry per CoT (one entry without CoT for ``rail``)."""

    score: float
    """Expected score on the scale: the mean over CoTs of sum_y y * p(y) / sum_y p(y)."""
    score_unnormalized: float
    """The paper's expected score (Eq. 3): the mean over CoTs of sum_y y * p(y), full-vocabulary p."""
    score_mass: float
    """The mean over CoTs of sum_y p(y): how much of the model's next-token mass the score tokens hold."""
    low_score_mass: bool
    """``score_mass`` below the judge's ``min_score_mass``: the score tokens were not what the model expected."""
    decoded_score: float
    """The mean over CoTs of the most probable score value (what greedy decoding of the score would give)."""
    cot_scores: list[float]
    """Each CoT's score on the scale."""
    score_probs: list[dict[str, float]]
    """Each CoT's distribution over the score values, renormalised (sums to 1)."""
    score_masses: list[float]
    """Each CoT's sum_y p(y) (the factor ``score_probs`` were divided by)."""
    cots: list[str]
    closed_by: list[str]
    prompt_truncated: bool
    """The prompt was shortened in the middle to fit ``max_prompt_len`` or the engine: graded on part of it."""
    key: str
    """Content key of the prompt; it seeds the row's sampling."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def grade_on_scale(
    prediction: JudgePrediction, values: list[float], key: str, min_score_mass: float, prompt_truncated: bool
) -> Grade:
    """The ``Grade`` of a CoT-RAIL / RAIL prediction, whose ``score_probs`` are full-vocabulary probabilities."""
    literals = list(prediction.score_probs[0])
    raw = np.array([[probs[literal] for literal in literals] for probs in prediction.score_probs], dtype=float)
    masses = raw.sum(axis=1)
    uniform = np.full(len(literals), 1.0 / len(literals))  # no mass at all: the midpoint, flagged
    renormalized = np.array([row / mass if mass > 0 else uniform for row, mass in zip(raw, masses, strict=True)])
    cot_scores = renormalized @ np.asarray(values, dtype=float)
    decoded = [values[int(np.argmax(row))] for row in raw]
    score_mass = float(masses.mean())
    return Grade(
        score=float(cot_scores.mean()),
        score_unnormalized=float((raw @ np.asarray(values, dtype=float)).mean()),
        score_mass=score_mass,
        low_score_mass=score_mass < min_score_mass,
        decoded_score=float(np.mean(decoded)),
        cot_scores=[float(score) for score in cot_scores],
        score_probs=[dict(zip(literals, map(float, row), strict=True)) for row in renormalized],
        score_masses=[float(mass) for mass in masses],
        cots=prediction.cots,
        closed_by=prediction.closed_by,
        prompt_truncated=prompt_truncated,
        key=key,
    )
