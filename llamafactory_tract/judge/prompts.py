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

"""The absolute-grading judge prompt in the Feedback Collection format that TRACT is trained on.

The text is that of the ``instruction`` field of Feedback Collection / Feedback Bench and of the
prometheus-eval benchmark files (Vicuna Bench, MT Bench, FLASK): task description, instruction,
response, reference answer (score 5), rubric, then ``###Feedback: ``. A trained judge is only
calibrated on prompts it was trained on, so the format is reproduced to the character (a test
rebuilds every Vicuna Bench / MT Bench prompt from its parts).

Rubrics come as a ready string or in prometheus-eval's ``SCORE_RUBRIC_TEMPLATE`` shape, a mapping
with ``criteria`` and ``score1_description`` ... ``score5_description``. Two differences from
prometheus-eval's ``ABSOLUTE_PROMPT``: item 3 reads ``"Feedback: (write a feedback ...)"`` as in
the training data (prometheus-eval's library template drops ``Feedback: ``), and the prompt without
a reference answer keeps that wording (Feedback Collection always has a reference, so prefer one).
"""

from collections.abc import Mapping

SCORE_LEVELS = (1, 2, 3, 4, 5)
RUBRIC_KEYS = ("criteria", *(f"score{level}_description" for level in SCORE_LEVELS))

_TASK_WITH_REFERENCE = (
    "An instruction (might include an Input inside it), a response to evaluate, a reference answer that gets "
    "a score of 5, and a score rubric representing a evaluation criteria are given."
)
_TASK_WITHOUT_REFERENCE = (
    "An instruction (might include an Input inside it), a response to evaluate, and a score rubric "
    "representing a evaluation criteria are given."
)
_STEPS = (
    "1. Write a detailed feedback that assess the quality of the response strictly based on the given score "
    "rubric, not evaluating in general.\n"
    "2. After writing a feedback, write a score that is an integer between 1 and 5. You should refer to the "
    "score rubric.\n"
    '3. The output format should look as follows: "Feedback: (write a feedback for criteria) [RESULT] '
    '(an integer number between 1 and 5)"\n'
    "4. Please do not generate any other opening, closing, and explanations."
)

ABSOLUTE_PROMPT = (
    f"###Task Description:\n{_TASK_WITH_REFERENCE}\n{_STEPS}\n\n"
    "###The instruction to evaluate:\n{instruction}\n\n"
    "###Response to evaluate:\n{response}\n\n"
    "###Reference Answer (Score 5):\n{reference_answer}\n\n"
    "###Score Rubrics:\n{rubric}\n\n"
    "###Feedback: "
)
ABSOLUTE_PROMPT_WO_REF = (
    f"###Task Description:\n{_TASK_WITHOUT_REFERENCE}\n{_STEPS}\n\n"
    "###The instruction to evaluate:\n{instruction}\n\n"
    "###Response to evaluate:\n{response}\n\n"
    "###Score Rubrics:\n{rubric}\n\n"
    "###Feedback: "
)
SCORE_RUBRIC_TEMPLATE = "[{criteria}]\n" + "\n".join(
    f"Score {level}: {{score{level}_description}}" for level in SCORE_LEVELS
)

Rubric = str | Mapping[str, str]


class InvalidRubric(ValueError):
    """A rubric mapping without its criteria or a score description; the message names the key."""


def format_rubric(rubric: Rubric) -> str:
    """A ready rubric string as is; a ``{criteria, score1_description, ...}`` mapping through the template."""
    if isinstance(rubric, str):
        if not rubric.strip():
            raise InvalidRubric("the rubric is empty")
        return rubric
    if not isinstance(rubric, Mapping):
        raise InvalidRubric(f"a rubric is a string or a mapping with keys {list(RUBRIC_KEYS)}, got {rubric!r:.80}")
    missing = [key for key in RUBRIC_KEYS if not isinstance(rubric.get(key), str) or not rubric[key].strip()]
    if missing:
        raise InvalidRubric(f"the rubric mapping lacks (or has empty) {missing}")
    return SCORE_RUBRIC_TEMPLATE.format(**{key: rubric[key] for key in RUBRIC_KEYS})


def prompt_parts(prompt: str) -> dict[str, str | None]:
    """Instruction, response, reference answer (None if absent) and rubric of a prompt in this format.

    The response may itself contain ``###`` headers, so it runs from the first response header to the
    last reference (or rubric) header.
    """
    headers = ["###The instruction to evaluate:\n", "\n\n###Response to evaluate:\n"]
    tail = ["\n\n###Score Rubrics:\n", "\n\n###Feedback: "]
    if "\n\n###Reference Answer (Score 5):\n" in prompt:
        tail.insert(0, "\n\n###Reference Answer (Score 5):\n")
    try:
        starts = [prompt.index(headers[0]), prompt.index(headers[1])] + [prompt.rindex(header) for header in tail]
    except ValueError as error:
        raise ValueError("not an absolute-grading prompt in the Feedback Collection format") from error
    sections = headers + tail
    texts = [prompt[starts[i] + len(sections[i]) : starts[i + 1]] for i in range(len(sections) - 1)]
    reference = texts[2] if len(texts) == 4 else None
    return {"instruction": texts[0], "response": texts[1], "reference_answer": reference, "rubric": texts[-1]}


def absolute_prompt(instruction: str, response: str, rubric: Rubric, reference_answer: str | None = None) -> str:
    """The judge prompt for one (instruction, response, rubric[, reference answer])."""
    values = {"instruction": instruction, "response": response, "rubric": format_rubric(rubric)}
    if reference_answer is None:
        return ABSOLUTE_PROMPT_WO_REF.format(**values)
    return ABSOLUTE_PROMPT.format(**values, reference_answer=reference_answer)
