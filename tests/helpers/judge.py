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

"""Shared by the judge API / CLI / server tests: one tiny judge's settings and a few graded rows."""

from pathlib import Path

from llamafactory_tract.judge.api import TractJudge

# The gpt2 family (qwen template): a random model that never writes the delimiter, 6-token CoTs.
FAMILY = "gpt2"
SETTINGS = {
    "infer_dtype": "float32",
    "max_new_tokens": 6,
    "n_cot": 2,
    "batch_size": 4,
    "seed": 11,
    "renormalize_scores": True,
}
RUBRIC = {
    "criteria": "Is the answer correct and helpful?",
    **{f"score{level}_description": f"Level {level} of correctness." for level in range(1, 6)},
}
ROWS = [
    {"instruction": "What is 12 + 345?", "response": "357", "reference_answer": "12 + 345 = 357."},
    {"instruction": "Name a fruit.", "response": "An apple.", "reference_answer": "Apples and pears are fruits."},
    {
        "instruction": "How can I improve my time management?",
        "response": "Plan, prioritize, rest.",
        "reference_answer": "Set goals, prioritize tasks and take breaks.",
    },
]


def settings_overrides(model_dir: Path, template: str) -> list[str]:
    """The same judge as ``tiny_judge`` for the ``tract judge`` / ``tract serve`` command lines."""
    items = {"model_name_or_path": str(model_dir), "template": template, **SETTINGS}
    return [f"{key}={str(value).lower() if isinstance(value, bool) else value}" for key, value in items.items()]


def tiny_judge(model_dir: Path, template: str) -> TractJudge:
    return TractJudge.from_pretrained(str(model_dir), template, **SETTINGS)
