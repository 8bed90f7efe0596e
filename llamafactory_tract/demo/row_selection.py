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

"""Which Prometheus rows the demo trains and evaluates on: every GPT-4 score level, questions held out.

A judge trained mostly on 4s and 5s learns that prior, and evaluation rows that are mostly 1s and 2s
then make it look anti-correlated (the earlier demo: 39 of 48 training labels 4 or 5, 12 of 16
evaluation rows 2.33 or less). So both sides are drawn level by level, round robin, the shortest prompts
of each level first (on 2 cores the prompt is most of each sequence), and evaluation rows whose question
appears in the training rows are left out, so a judge is never scored on a question it was trained on.
"""

import math
from collections.abc import Callable
from typing import Any

from llamafactory_tract.judge.prompts import prompt_parts

Record = dict[str, Any]


def first_score_level(record: Record) -> int:
    """The label the demo trains on: the first GPT-4 score (``annotation_rows`` uses the first feedback)."""
    return int(record["gpt4_score"][0])


def mean_score_level(record: Record) -> int:
    """The evaluation label (the mean of the three GPT-4 scores), rounded half up to a level."""
    scores = record["gpt4_score"]
    return math.floor(sum(scores) / len(scores) + 0.5)


def question_of(record: Record) -> str:
    """The instruction the response answers: the same question in two files has the same text."""
    return prompt_parts(record["instruction"])["instruction"].strip()


def level_balanced(records: list[Record], rows: int, level_of: Callable[[Record], int]) -> list[Record]:
    """``rows`` records taken one per level in turn, the shortest prompt of each level first, in file order.

    A level with fewer records than its share gives all it has, and the others fill the rest.
    """
    by_level: dict[int, list[int]] = {}
    for index, record in enumerate(records):
        by_level.setdefault(level_of(record), []).append(index)
    queues = [
        sorted(indices, key=lambda index: len(records[index]["instruction"]))
        for _, indices in sorted(by_level.items())
    ]
    chosen: list[int] = []
    depth = 0
    while len(chosen) < min(rows, len(records)):
        for queue in queues:
            if depth < len(queue) and len(chosen) < rows:
                chosen.append(queue[depth])
        depth += 1
    return [records[index] for index in sorted(chosen)]


def held_out(records: list[Record], trained: list[Record]) -> tuple[list[Record], int]:
    """The records whose question is not among the trained records' questions, and how many were left out."""
    seen = {question_of(record) for record in trained}
    kept = [record for record in records if question_of(record) not in seen]
    return kept, len(records) - len(kept)


def level_counts(records: list[Record], level_of: Callable[[Record], int]) -> str:
    """``1: 8, 2: 8, ...``: how many records each score level has."""
    counts: dict[int, int] = {}
    for record in records:
        counts[level_of(record)] = counts.get(level_of(record), 0) + 1
    return ", ".join(f"{level}: {count}" for level, count in sorted(counts.items()))
