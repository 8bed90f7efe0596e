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

"""Training rows from the Prometheus evaluation format (real GPT-4 feedback), for CPU-scale runs.

Vicuna Bench / MT Bench rows carry the judge prompt, three GPT-4 feedback texts and their three
scores. Each (feedback, score) pair is an annotation CoT with its label, so a few hundred of them
stand in for Feedback Collection where the hub is out of reach. Rows are written in LLaMA-Factory's
alpaca layout (``instruction`` / ``output``), the output in canonical ``<CoT> <delimiter> <y>`` form.
"""

import json
from pathlib import Path

from llamafactory_tract.data.score_format import ScoreFormat


class MalformedPrometheusRow(ValueError):
    """A Prometheus-format row without aligned feedback and score lists."""


def annotation_rows(
    source: Path, score_format: ScoreFormat, limit: int | None = None, feedbacks_per_row: int = 1
) -> list[dict[str, str]]:
    """One alpaca row per (prompt, GPT-4 feedback, GPT-4 score); ``limit`` counts source rows."""
    records = json.loads(Path(source).read_text(encoding="utf-8"))
    rows = []
    for index, record in enumerate(records[:limit]):
        feedbacks, scores = record.get("gpt4_feedback"), record.get("gpt4_score")
        if not isinstance(feedbacks, list) or not isinstance(scores, list) or len(feedbacks) != len(scores):
            raise MalformedPrometheusRow(
                f"{source} row {index}: `gpt4_feedback` and `gpt4_score` must be equal-length lists"
            )
        for feedback, score in list(zip(feedbacks, scores, strict=True))[:feedbacks_per_row]:
            literal = score_format.canonical_literal(str(score))
            rows.append(
                {
                    "instruction": record["instruction"],
                    "output": score_format.format_response(feedback.strip(), literal),
                }
            )
    return rows
