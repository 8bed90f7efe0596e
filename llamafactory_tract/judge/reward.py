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

"""The judge as a reward model for RL: its expected score is the reward of a (prompt, completion).

    reward = TractReward(TractJudge.from_pretrained(...), rubric=RUBRIC)
    trainer = GRPOTrainer(model=..., reward_funcs=[reward], train_dataset=dataset, args=GRPOConfig(...))

``TractReward`` is called the way TRL's ``GRPOTrainer`` calls a custom reward function (trl 0.24.0,
``GRPOTrainer._calculate_rewards``): ``reward(prompts=..., completions=..., completion_ids=..., **columns)``
where every other dataset column arrives as a keyword list with one entry per completion. The expected
score is a graded reward (sum_y y * p(y)), not the decoded integer: completions of one prompt that the
judge rates alike but not identically get different rewards, which GRPO's group advantages can use.
"""

from collections.abc import Mapping, Sequence
from typing import Any

from llamafactory_tract.judge.api import TractJudge
from llamafactory_tract.judge.prompts import Rubric, format_rubric

Turn = str | Sequence[Mapping[str, Any]]
"""A TRL prompt or completion: plain text, or a conversation (a list of ``{"role", "content"}`` messages)."""


def message_text(content: str | Sequence[Mapping[str, Any]]) -> str:
    """A message's text: its string, or the text parts of a multimodal content list."""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if part.get("type") == "text")


def prompt_instruction(prompt: Turn) -> str:
    """The instruction the judge grades against: the text prompt, or the last user message of a conversation."""
    if isinstance(prompt, str):
        return prompt
    users = [message for message in prompt if message.get("role") == "user"]
    if not users:
        raise ValueError(f"a conversational prompt without a user message: {list(prompt)!r:.200}")
    return message_text(users[-1]["content"])


def completion_text(completion: Turn) -> str:
    """The response the judge grades: the text completion, or the content of its last message."""
    if isinstance(completion, str):
        return completion
    return message_text(completion[-1]["content"]) if completion else ""


def unit_score(score: float, values: Sequence[float]) -> float:
    """``score`` mapped affinely from [min, max] of the score values to [0, 1] (1..5 -> 0..1)."""
    low, high = min(values), max(values)
    return (score - low) / (high - low)


class TractReward:
    """A TRL reward function: one expected score per (prompt, completion), ``None`` for rows without a rubric.

    The rubric of a row is its ``rubric`` column (a string or a prometheus-eval rubric mapping) and else
    the ``rubric`` given here; a ``reference_answer`` column, where a row has one, goes into the judge
    prompt as in Feedback Collection. A row with neither rubric gets ``None``, which TRL reads as "this
    reward does not apply" (datasets that mix tasks with other reward functions); with no rubric column
    and no rubric here the call fails, since every reward would be ``None``.
    """

    def __init__(
        self,
        judge: TractJudge,
        rubric: Rubric | None = None,
        *,
        unit_interval: bool = False,
        n_cot: int | None = None,
        name: str = "tract_judge",
    ) -> None:
        """``unit_interval`` maps the score to [0, 1]; ``name`` is the ``__name__`` under which TRL logs the reward."""
        if rubric is not None:
            format_rubric(rubric)  # a bad rubric fails here, not at the first training step
        self.judge = judge
        self.rubric = rubric
        self.unit_interval = unit_interval
        self.n_cot = n_cot
        self.__name__ = name

    def __call__(
        self,
        prompts: Sequence[Turn],
        completions: Sequence[Turn],
        rubric: Sequence[Rubric | None] | None = None,
        reference_answer: Sequence[str | None] | None = None,
        **columns: Any,
    ) -> list[float | None]:
        """Grade the rows that have a rubric; ``columns`` takes TRL's ``completion_ids``, ``trainer_state``, etc."""
        if rubric is None and self.rubric is None:
            raise ValueError("TractReward has no rubric: give it one, or give the dataset a `rubric` column.")
        count = len(prompts)
        rubrics = [self.rubric] * count if rubric is None else [row or self.rubric for row in rubric]
        references = [None] * count if reference_answer is None else [row or None for row in reference_answer]
        rows = [index for index in range(count) if rubrics[index] is not None]
        grades = self.judge.absolute_grade(
            instructions=[prompt_instruction(prompts[index]) for index in rows],
            responses=[completion_text(completions[index]) for index in rows],
            rubric=[rubrics[index] for index in rows],
            reference_answers=[references[index] for index in rows],
            n_cot=self.n_cot,
        )
        rewards: list[float | None] = [None] * count
        for index, grade in zip(rows, grades, strict=True):
            rewards[index] = unit_score(grade.score, self.judge.values) if self.unit_interval else grade.score
        return rewards
