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

"""Judge rows for the benchmarks: the shared Prometheus rows when present, synthetic ones otherwise."""

import json
import os
from pathlib import Path

SHARED_DATA = Path(
    os.environ.get("TRACT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data" / "prometheus")
)
DELIMITER = "So the overall score is"


def judge_rows(count: int, min_prompt_chars: int = 0) -> list[dict[str, str]]:
    """``count`` alpaca rows, outputs ending in ``<delimiter> <score>``; prompts repeated to a minimum length."""
    source = SHARED_DATA / "vicuna_eval.json"
    if source.is_file():
        raw = json.loads(source.read_text())
        pairs = [(row["instruction"], row["gpt4_feedback"][0], round(row["gpt4_score"][0])) for row in raw]
    else:
        topics = ["time management", "sorting", "photosynthesis", "tax law", "chess"]
        pairs = [
            (
                f"###Task Description: grade the response about {topic}. " * 40,
                f"The answer on {topic} is vague. " * 12,
                1 + i % 5,
            )
            for i, topic in enumerate(topics)
        ]
    rows = []
    for index in range(count):
        instruction, feedback, score = pairs[index % len(pairs)]
        repeats = 1 + max(0, min_prompt_chars - 1) // max(len(instruction), 1)
        rows.append(
            {"instruction": "\n".join([instruction] * repeats), "output": f"{feedback.strip()} {DELIMITER} {score}"}
        )
    return rows


def write_dataset(directory: Path, rows: list[dict[str, str]], name: str = "judge") -> Path:
    """LLaMA-Factory dataset_dir with one alpaca dataset ``name``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.json").write_text(json.dumps(rows))
    info = {name: {"file_name": f"{name}.json", "columns": {"prompt": "instruction", "response": "output"}}}
    (directory / "dataset_info.json").write_text(json.dumps(info))
    return directory
