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

"""The judge's Python API: Feedback Collection prompts to the character, and grades on a tiny model."""

import json
import re

import numpy as np
import pytest

from llamafactory_tract.data.authors_rules import NO_FEEDBACK_ENDING, NO_FEEDBACK_HEADER, AuthorsPromptRules
from llamafactory_tract.eval.config import build_eval_config
from llamafactory_tract.judge.api import TractJudge, prompt_key
from llamafactory_tract.judge.backend import JudgePrompt
from llamafactory_tract.judge.prompts import (
    ABSOLUTE_PROMPT,
    RUBRIC_KEYS,
    InvalidRubric,
    absolute_prompt,
    format_rubric,
    prompt_parts,
)
from tests.helpers.inference import require_shared_file
from tests.helpers.judge import FAMILY, ROWS, RUBRIC, SETTINGS, tiny_judge

RUBRIC_PATTERN = re.compile(r"\[(.*)\]" + "".join(rf"\nScore {level}: (.*)" for level in range(1, 6)), re.S)


@pytest.mark.parametrize("name", ["vicuna_eval.json", "mt_bench_eval.json"])
def test_prompts_rebuild_every_benchmark_prompt_to_the_character(name):
    rows = json.loads(require_shared_file(name).read_text())
    assert len(rows) == 320
    for index, row in enumerate(rows):
        parts = prompt_parts(row["instruction"])
        instruction, response, reference, rubric = (
            parts[key] for key in ("instruction", "response", "reference_answer", "rubric")
        )
        assert absolute_prompt(instruction, response, rubric, reference) == row["instruction"], index
        criteria = dict(zip(RUBRIC_KEYS, RUBRIC_PATTERN.fullmatch(rubric).groups(), strict=True))
        assert format_rubric(criteria) == rubric, index
        assert absolute_prompt(instruction, response, criteria, reference) == row["instruction"], index


def test_prompt_without_reference_and_rubric_errors():
    prompt = absolute_prompt("Add 2 and 2.", "4", RUBRIC)
    assert "###Reference Answer" not in prompt and "a reference answer" not in prompt
    assert prompt.endswith("\n\n###Score Rubrics:\n" + format_rubric(RUBRIC) + "\n\n###Feedback: ")
    assert prompt.split("###The instruction")[0] != ABSOLUTE_PROMPT.split("###The instruction")[0]
    assert prompt_parts(prompt) == {
        "instruction": "Add 2 and 2.",
        "response": "4",
        "reference_answer": None,
        "rubric": format_rubric(RUBRIC),
    }
    braces = absolute_prompt("Print {x} and {}.", "{response}", "[c]\nScore 1: {a}", "{y}")
    assert "Print {x} and {}." in braces and "\n{response}\n" in braces
    with pytest.raises(InvalidRubric, match=r"lacks \(or has empty\) \['score3_description'\]"):
        format_rubric({**RUBRIC, "score3_description": " "})
    with pytest.raises(InvalidRubric, match="empty"):
        format_rubric("  ")


@pytest.fixture(scope="module")
def judge(tiny_model_dirs) -> TractJudge:
    return tiny_judge(*tiny_model_dirs[FAMILY])


def _grade_rows(judge: TractJudge, rows: list[dict], **options):
    return judge.absolute_grade(
        instructions=[row["instruction"] for row in rows],
        responses=[row["response"] for row in rows],
        rubric=RUBRIC,
        reference_answers=[row["reference_answer"] for row in rows],
        **options,
    )


def test_grades_carry_cots_distributions_and_expected_scores(judge):
    grades = _grade_rows(judge, ROWS)
    values = np.arange(1, 6, dtype=float)
    for row, grade in zip(ROWS, grades, strict=True):
        assert len(grade.cots) == len(grade.score_probs) == len(grade.cot_scores) == len(grade.closed_by) == 2
        # A random model never writes the delimiter: both CoTs were closed at the 6-token limit.
        assert grade.closed_by == ["max_new_tokens", "max_new_tokens"]
        raw = []
        for probs, mass, cot_score in zip(grade.score_probs, grade.score_masses, grade.cot_scores, strict=True):
            p = np.array([probs[str(value)] for value in range(1, 6)])
            assert p.sum() == pytest.approx(1.0) and 0 < mass < 1  # on the scale; the mass is what the model gave
            assert cot_score == pytest.approx(float(values @ p))
            raw.append(p * mass)
        assert grade.score == pytest.approx(np.mean(grade.cot_scores))
        assert grade.score_mass == pytest.approx(np.mean(grade.score_masses))
        assert grade.score_unnormalized == pytest.approx(np.mean([values @ p for p in raw]))
        decoded = [values[np.argmax([probs[str(v)] for v in range(1, 6)])] for probs in grade.score_probs]
        assert grade.decoded_score == pytest.approx(np.mean(decoded))
        prompt = absolute_prompt(row["instruction"], row["response"], RUBRIC, row["reference_answer"])
        assert grade.key == prompt_key(prompt)


def test_grades_stay_on_the_scale_where_the_papers_number_leaves_it_and_a_low_mass_is_flagged(judge):
    """A random model puts little mass on the score tokens: Eq. 3 gives a number below 1, the grade does not."""
    grades = _grade_rows(judge, ROWS)
    assert all(1.0 <= grade.score <= 5.0 for grade in grades)
    assert all(grade.score_unnormalized < 1.0 for grade in grades)  # the paper's definition: off the 1-5 scale
    assert all(grade.score_mass < judge.config.min_score_mass and grade.low_score_mass for grade in grades)
    lenient = TractJudge(judge.backend, judge.config.model_copy(update={"min_score_mass": 0.0}))
    assert not any(grade.low_score_mass for grade in _grade_rows(lenient, ROWS))


def test_a_prompt_shortened_to_fit_is_flagged_on_its_grade(judge, tiny_model_dirs):
    model_dir, template = tiny_model_dirs[FAMILY]
    fits = absolute_prompt(ROWS[0]["instruction"], ROWS[0]["response"], RUBRIC, ROWS[0]["reference_answer"])
    limit = len(judge.backend.contexts.prompt_ids(JudgePrompt.from_instruction(fits)))
    short = TractJudge.from_pretrained(str(model_dir), template, **{**SETTINGS, "max_prompt_len": limit})
    grades = _grade_rows(short, [ROWS[0], {**ROWS[1], "response": "An apple. " * 100}])
    assert [grade.prompt_truncated for grade in grades] == [False, True]
    assert not any(grade.prompt_truncated for grade in _grade_rows(judge, ROWS))


def test_a_rows_grade_depends_on_seed_and_prompt_not_on_its_batch(judge):
    batch = _grade_rows(judge, ROWS)
    row = ROWS[1]
    single = judge.single_absolute_grade(row["instruction"], row["response"], RUBRIC, row["reference_answer"])
    assert single.cots == batch[1].cots
    assert single.score == pytest.approx(batch[1].score, abs=1e-5)
    reordered = _grade_rows(judge, ROWS[::-1])
    assert [grade.cots for grade in reordered[::-1]] == [grade.cots for grade in batch]
    other_seed = _grade_rows(judge, ROWS, seed=12)
    assert [grade.cots for grade in other_seed] != [grade.cots for grade in batch]
    three = judge.single_absolute_grade(row["instruction"], row["response"], RUBRIC, row["reference_answer"], n_cot=3)
    assert three.cots[:2] == single.cots and len(three.cots) == 3


def test_bad_arguments_are_refused(judge, tiny_model_dirs):
    with pytest.raises(ValueError, match="`responses` has 1 entries for 2 instructions"):
        judge.absolute_grade(instructions=["a", "b"], responses=["x"], rubric=RUBRIC)
    with pytest.raises(ValueError, match="`rubric` has 3 entries for 2 instructions"):
        judge.absolute_grade(instructions=["a", "b"], responses=["x", "y"], rubric=[RUBRIC] * 3)
    with pytest.raises(InvalidRubric, match="criteria"):
        judge.single_absolute_grade("a", "x", {"score1_description": "bad"})
    model_dir, template = tiny_model_dirs[FAMILY]
    with pytest.raises(ValueError, match="`predictor` must be one of"):
        TractJudge.from_pretrained(str(model_dir), template, predictor="cot_decode")


def test_a_score_only_judge_grades_the_prompt_rewritten_by_the_authors_rules(judge):
    plain_config = {**judge.config.model_dump(), "predictor": "rail"}
    plain = TractJudge.from_config(build_eval_config(plain_config, source="test"))
    rules = {"score_only_prompt": True, "remove_reference": True}
    rules_config = build_eval_config({**plain_config, **rules}, source="test")
    score_only = TractJudge(plain.backend, rules_config)
    prompts = [absolute_prompt(r["instruction"], r["response"], RUBRIC, r["reference_answer"]) for r in ROWS]
    seen = score_only.judge_prompt(prompts[0])
    assert seen.startswith(NO_FEEDBACK_HEADER) and seen.endswith(NO_FEEDBACK_ENDING)
    assert "###Reference Answer" not in seen and ROWS[0]["reference_answer"] not in seen
    grades = _grade_rows(score_only, ROWS)
    rewritten = plain.grade_prompts([AuthorsPromptRules(True, True).apply(prompt).text for prompt in prompts])
    assert [grade.score_probs for grade in grades] == [grade.score_probs for grade in rewritten]
    assert [grade.score for grade in grades] != pytest.approx([grade.score for grade in plain.grade_prompts(prompts)])
    assert [grade.key for grade in grades] == [prompt_key(prompt) for prompt in prompts]  # keyed by the prompt given
    with pytest.raises(ValueError, match="Prompt 1: .*'###The instruction to evaluate:'"):
        score_only.grade_prompts([prompts[0], "Grade this."])
