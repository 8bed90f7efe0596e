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

"""Pairwise agreement with GPT-4: which of two responses to one question is better.

Vicuna Bench and MT Bench hold four responses per question, each with GPT-4's score. Every two
responses of one question that GPT-4 scored differently form a pair; the judge's absolute grades of
the two (already predicted by ``tract eval``) give its relative grade (``judge/relative.py``):

- ``pair_accuracy``: the share of pairs where the judge's score difference has GPT-4's sign (an equal
  score counts one half);
- ``pair_p_correct``: the mean probability that the judge, drawing one score for each response from its
  distributions, ranks GPT-4's better response higher (a tie counts one half). A judge sure of the right
  order scores 1, a coin 0.5.

Intervals resample questions, as for the correlations: the pairs of one question share responses.
"""

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np

from llamafactory_tract.eval.intervals import Interval, percentile_interval, question_bootstrap
from llamafactory_tract.eval.metrics import format_interval
from llamafactory_tract.judge.relative import preference, score_distribution

PAIR_METRICS = ("pair_accuracy", "pair_p_correct")


@dataclass
class PairwiseResult:
    pairs: int
    questions: int
    metrics: dict[str, float]
    intervals: dict[str, Interval] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pairs": self.pairs,
            "questions": self.questions,
            **self.metrics,
            "intervals": {name: list(bounds) for name, bounds in self.intervals.items()},
        }


def pairwise_agreement(
    records: Sequence[dict[str, Any]], questions: Sequence[Hashable], values: list[float]
) -> PairwiseResult | None:
    """The two metrics over the differently scored pairs within each question; None when there is no such pair."""
    pairs, pair_questions = [], []
    for question in dict.fromkeys(questions):
        members = [index for index, owner in enumerate(questions) if owner == question]
        for first, second in combinations(members, 2):
            if records[first]["ground_truth"] != records[second]["ground_truth"]:
                pairs.append((first, second))
                pair_questions.append(question)
    if not pairs:
        return None
    outcomes = np.array([_outcome(records[first], records[second], values) for first, second in pairs])

    def means(rows: np.ndarray) -> np.ndarray:
        return outcomes[rows].mean(axis=0)

    intervals = percentile_interval(question_bootstrap(means, pair_questions))
    return PairwiseResult(
        pairs=len(pairs),
        questions=len(set(pair_questions)),
        metrics=dict(zip(PAIR_METRICS, map(float, means(np.arange(len(pairs)))), strict=True)),
        intervals=dict(zip(PAIR_METRICS, intervals, strict=True)),
    )


def _outcome(first: dict[str, Any], second: dict[str, Any], values: list[float]) -> tuple[float, float]:
    """(agreement of the score difference's sign, probability of the right order) for GPT-4's better one first."""
    better, worse = (first, second) if first["ground_truth"] > second["ground_truth"] else (second, first)
    difference = better["score"] - worse["score"]
    agreement = 1.0 if difference > 0 else 0.5 if difference == 0 else 0.0
    wins, tie, _ = preference(
        score_distribution(better["score_probs"]), score_distribution(worse["score_probs"]), values
    )
    return agreement, wins + tie / 2


def format_pairwise(results: dict[str, PairwiseResult]) -> str:
    """One line per benchmark: pairs, the two metrics and their 95% intervals."""
    lines = []
    for name, result in results.items():
        cells = "  ".join(
            f"{metric} {result.metrics[metric]:.3f} {format_interval(result.intervals[metric])}"
            for metric in PAIR_METRICS
        )
        lines.append(f"Pairwise vs GPT-4, {name}: {result.pairs} pairs on {result.questions} questions: {cells}")
    return "\n".join(lines)
