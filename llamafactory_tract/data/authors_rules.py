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

"""The TRACT authors' prompt rules for score-only rows, opt-in on both the training and the eval side.

The paper trains every Table 2 row on the one Feedback Collection judge prompt; the authors' code
gives the score-only rows (B.1, B.4) a no-feedback prompt (``finetuning_utils/prompts/
feedback_collection/no_feedback.prompt``: its own task description, ending ``###Score (an integer
from 1 to 5):``) and evaluates them with the reference answer cut out (``inference.py --remove``).
A judge is calibrated only on the prompt it was trained on, so one function rewrites both sides.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING

from llamafactory_tract.data.score_format import PROMETHEUS_RESULT_MARKER, InvalidJudgeResponse

if TYPE_CHECKING:
    from llamafactory_tract.hparams.data_args import TractDataArguments

INSTRUCTION_HEADER = "###The instruction to evaluate:"
REFERENCE_HEADER = "###Reference Answer"
RUBRIC_HEADER = "###Score Rubrics:"
FEEDBACK_ENDING = "###Feedback:"
# The authors' no-feedback task description, to the character ("betweeb" included): their
# score-only models were trained on exactly this text.
NO_FEEDBACK_HEADER = (
    "###Task Description:\n"
    "An instruction (might include an Input inside it), a response to evaluate, a reference answer that gets a "
    "score of 5, and a score rubric representing an evaluation criterion is given.\n"
    "1. Write a score betweeb 1 to 5 that assesses the quality of the response strictly based on the given score "
    "rubric, not evaluating in general.\n"
    "2. The output format should look as follows: [RESULT] (an integer number between 1 and 5)\n"
    "3. Please do not generate any other opening, closing, and explanations about the score.\n\n"
    f"{INSTRUCTION_HEADER}"
)
NO_FEEDBACK_ENDING = "###Score (an integer from 1 to 5):"


class PromptSectionMissing(InvalidJudgeResponse):
    """A judge prompt lacks the section a rule rewrites; the message names the section and the rule."""


def to_no_feedback_prompt(prompt: str) -> str:
    """The authors' no-feedback (score-only) form of a Feedback Collection judge prompt.

    Everything up to the instruction header is replaced by their no-feedback task description and the
    closing ``###Feedback:`` by ``###Score (an integer from 1 to 5):``; instruction, response, reference
    and rubric are kept as they are. A prompt already in that form comes back unchanged.
    """
    start = prompt.find(INSTRUCTION_HEADER)
    if start < 0:
        raise PromptSectionMissing(f"no {INSTRUCTION_HEADER!r} section to rewrite to the no-feedback prompt")
    body = prompt[start + len(INSTRUCTION_HEADER) :].rstrip()
    if body.endswith(FEEDBACK_ENDING):
        body = body[: -len(FEEDBACK_ENDING)]
    elif body.endswith(NO_FEEDBACK_ENDING):
        body = body[: -len(NO_FEEDBACK_ENDING)]
    else:
        raise PromptSectionMissing(
            f"the prompt does not end with {FEEDBACK_ENDING!r}, which the no-feedback prompt replaces "
            f"with {NO_FEEDBACK_ENDING!r}"
        )
    return NO_FEEDBACK_HEADER + body + NO_FEEDBACK_ENDING


def remove_reference_answer(prompt: str) -> str | None:
    """The prompt without its reference-answer section (header to the rubric header); None if it has none.

    As the authors' ``--remove``: the text from ``###Reference Answer`` up to ``###Score Rubrics:`` goes.
    The last headers are used, so a response under evaluation that quotes a header cannot cut it short.
    """
    rubric = prompt.rfind(RUBRIC_HEADER)
    reference = prompt.rfind(REFERENCE_HEADER, 0, rubric if rubric >= 0 else len(prompt))
    if reference < 0:
        if REFERENCE_HEADER in prompt:
            raise PromptSectionMissing(
                f"{REFERENCE_HEADER!r} comes after the last {RUBRIC_HEADER!r}: cannot tell where the reference ends"
            )
        return None
    if rubric < 0:
        raise PromptSectionMissing(f"no {RUBRIC_HEADER!r} after {REFERENCE_HEADER!r}: cannot tell where it ends")
    return prompt[:reference] + prompt[rubric:]


@dataclass(frozen=True)
class PromptRewrite:
    """A prompt after the rules; ``reference_removed`` is None when that rule is off."""

    text: str
    rewritten: bool
    reference_removed: bool | None


@dataclass(frozen=True)
class AuthorsPromptRules:
    """Which of the authors' prompt rules apply (both off: the paper's single judge prompt)."""

    score_only_prompt: bool = False
    remove_reference: bool = False

    @property
    def active(self) -> bool:
        return self.score_only_prompt or self.remove_reference

    def apply(self, prompt: str) -> PromptRewrite:
        """Rewrite one judge prompt; raise ``PromptSectionMissing`` when a rule's section is not there."""
        text = to_no_feedback_prompt(prompt) if self.score_only_prompt else prompt
        removed = None
        if self.remove_reference:
            without = remove_reference_answer(text)
            removed = without is not None
            text = without if without is not None else text
        return PromptRewrite(text, self.score_only_prompt, removed)


def missing_delimiter_reason(delimiter: str) -> str:
    """The invalid-row reason of a CoT without the delimiter (one fixed text per run, so rows can be counted)."""
    return f"no {delimiter!r} in the response (cotraft_require_delimiter drops it instead of closing the CoT with it)"


def has_delimiter(response: str, delimiter: str) -> bool:
    """Whether the feedback itself (the text before a final ``[RESULT]``) contains the delimiter."""
    feedback = response.rpartition(PROMETHEUS_RESULT_MARKER)[0] if PROMETHEUS_RESULT_MARKER in response else response
    return delimiter in feedback


def prompt_rules_of(data_args: "TractDataArguments") -> AuthorsPromptRules:
    """The rules the training keys ``score_only_prompt`` / ``remove_reference`` switch on."""
    return AuthorsPromptRules(data_args.score_only_prompt, data_args.remove_reference)
