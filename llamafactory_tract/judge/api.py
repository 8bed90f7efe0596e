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

"""The judge as a Python object, shaped like prometheus-eval's ``PrometheusEval``.

    judge = TractJudge.from_pretrained("mistralai/Mistral-7B-Instruct-v0.2", template="mistral",
                                       adapter_name_or_path="saves/mistral-7b/tract_stage2")
    grade = judge.single_absolute_grade(instruction=..., response=..., rubric=..., reference_answer=...)
    grade.score            # expected score, sum_y y * p(y | prompt, CoT) (paper Eq. 3)

Where it differs from prometheus-eval: the score is read from the score-token distribution after
``So the overall score is`` (prometheus-eval parses the integer after ``[RESULT]`` from text), so
each row returns the CoT(s), that distribution and the expected score, plus the decoded score (the
most probable score value) for comparison, as ``Grade`` objects instead of ``(feedbacks, scores)``.
The prompt goes through the model's LLaMA-Factory template with its default system prompt, as in
training, not through fastchat's mistral template with prometheus-eval's ``ABS_SYSTEM_PROMPT``.

A judge trained with the TRACT authors' score-only rules (``score_only_prompt``, ``remove_reference``,
see ``data/authors_rules.py``) gets each prompt rewritten by those rules before grading, as ``tract
eval`` rewrites its benchmarks: a judge is calibrated only on the prompt it was trained on.

Sampling is keyed per row by the prompt text as given (before any rewriting): a row's random draws
depend only on (seed, prompt, CoT index), so ``tract judge``, the server and this object draw the same
numbers for the same row whatever batch it lands in; change ``seed`` for fresh draws. The CoTs are the
same too where the logits do not depend on the batch: on CPU in float32 (tested, both backends; the
scores then agree up to float32 rounding, a few 1e-6 from another batch's padding), and on a GPU with
``backend: vllm`` and ``vllm_batch_invariant: true``. Otherwise a GPU's batch-dependent kernels
(bf16/fp16, padding, vLLM's chunked prefill and prefix-cache hits) move logits by rounding, and a CoT can
take another token where two are nearly tied.
"""

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from tqdm import tqdm

from llamafactory_tract.judge.backend import JudgeBackend, JudgePrompt
from llamafactory_tract.judge.config import JudgeConfig, build_judge_config
from llamafactory_tract.judge.grade import Grade, grade_on_scale
from llamafactory_tract.judge.loader import load_backend
from llamafactory_tract.judge.predictors import JudgePredictor
from llamafactory_tract.judge.prompts import Rubric, absolute_prompt
from llamafactory_tract.judge.relative import RelativeGrade, relative_grade

EXPECTED_SCORE_PREDICTORS = ("cot_rail", "rail")


def check_predictor(config: JudgeConfig) -> None:
    if config.predictor not in EXPECTED_SCORE_PREDICTORS:
        raise ValueError(
            f"The judge returns expected scores: `predictor` must be one of {list(EXPECTED_SCORE_PREDICTORS)}, "
            f"got {config.predictor!r} (the decoded score is returned alongside)."
        )


def prompt_key(prompt: str) -> str:
    """A stable id of a judge prompt, used as the row's sampling key."""
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:16]


class TractJudge:
    """A loaded judge; ``absolute_grade`` grades rows with CoT-RAIL (or RAIL) and returns ``Grade`` objects."""

    def __init__(self, backend: JudgeBackend, config: JudgeConfig) -> None:
        check_predictor(config)
        self.backend = backend
        self.config = config
        self.values = backend.score_tokens.numeric_values

    @classmethod
    def from_config(cls, config: JudgeConfig) -> "TractJudge":
        """Load the model of a ``JudgeConfig`` (transformers, or vLLM with ``backend: vllm``)."""
        check_predictor(config)
        return cls(load_backend(config, with_cot=config.uses_cot), config)

    @classmethod
    def from_pretrained(
        cls,
        model_name_or_path: str,
        template: str,
        adapter_name_or_path: str | None = None,
        **settings: Any,
    ) -> "TractJudge":
        """Base model + optional LoRA adapter + LLaMA-Factory template; ``settings``: any other ``JudgeConfig`` key."""
        raw = {"model_name_or_path": model_name_or_path, "template": template, **settings}
        if adapter_name_or_path is not None:
            raw["adapter_name_or_path"] = adapter_name_or_path
        return cls.from_config(build_judge_config(raw, source="TractJudge.from_pretrained"))

    def close(self) -> None:
        """Release the engine (vLLM's engine processes hold memory until closed)."""
        self.backend.close()

    def absolute_grade(
        self,
        *,
        instructions: Sequence[str],
        responses: Sequence[str],
        rubric: Rubric | Sequence[Rubric],
        reference_answers: Sequence[str | None] | None = None,
        n_cot: int | None = None,
        seed: int | None = None,
        use_tqdm: bool = False,
    ) -> list[Grade]:
        """Grade rows; one rubric for all rows or one per row; ``n_cot``/``seed`` default to the config's."""
        count = len(instructions)
        rubrics = [rubric] * count if isinstance(rubric, (str, Mapping)) else list(rubric)
        references = [None] * count if reference_answers is None else list(reference_answers)
        for name, items in (("responses", responses), ("rubric", rubrics), ("reference_answers", references)):
            if len(items) != count:
                raise ValueError(f"`{name}` has {len(items)} entries for {count} instructions.")
        prompts = [
            absolute_prompt(instruction, response, row_rubric, reference)
            for instruction, response, row_rubric, reference in zip(
                instructions, responses, rubrics, references, strict=True
            )
        ]
        return self.grade_prompts(prompts, n_cot, seed, use_tqdm)

    def single_absolute_grade(
        self,
        instruction: str,
        response: str,
        rubric: Rubric,
        reference_answer: str | None = None,
        n_cot: int | None = None,
        seed: int | None = None,
    ) -> Grade:
        return self.absolute_grade(
            instructions=[instruction],
            responses=[response],
            rubric=[rubric],
            reference_answers=[reference_answer],
            n_cot=n_cot,
            seed=seed,
        )[0]

    def relative_grade(
        self,
        *,
        instructions: Sequence[str],
        responses_a: Sequence[str],
        responses_b: Sequence[str],
        rubric: Rubric | Sequence[Rubric],
        reference_answers: Sequence[str | None] | None = None,
        n_cot: int | None = None,
        seed: int | None = None,
        use_tqdm: bool = False,
    ) -> list[RelativeGrade]:
        """Which response of each pair is better (``judge/relative.py``): both graded in one pass, then compared."""
        count = len(instructions)
        if len(responses_a) != count or len(responses_b) != count:
            raise ValueError(
                f"`responses_a` / `responses_b` have {len(responses_a)} / {len(responses_b)} entries for "
                f"{count} instructions."
            )
        rubrics = [rubric] * count if isinstance(rubric, (str, Mapping)) else list(rubric)
        references = None if reference_answers is None else [*reference_answers, *reference_answers]
        grades = self.absolute_grade(
            instructions=[*instructions, *instructions],
            responses=[*responses_a, *responses_b],
            rubric=[*rubrics, *rubrics],
            reference_answers=references,
            n_cot=n_cot,
            seed=seed,
            use_tqdm=use_tqdm,
        )
        return [relative_grade(a, b, self.values) for a, b in zip(grades[:count], grades[count:], strict=True)]

    def single_relative_grade(
        self,
        instruction: str,
        response_a: str,
        response_b: str,
        rubric: Rubric,
        reference_answer: str | None = None,
        n_cot: int | None = None,
        seed: int | None = None,
    ) -> RelativeGrade:
        return self.relative_grade(
            instructions=[instruction],
            responses_a=[response_a],
            responses_b=[response_b],
            rubric=[rubric],
            reference_answers=[reference_answer],
            n_cot=n_cot,
            seed=seed,
        )[0]

    def judge_prompt(self, prompt: str) -> str:
        return self.config.judge_prompt(prompt)

    def grade_prompts(
        self, prompts: Sequence[str], n_cot: int | None = None, seed: int | None = None, use_tqdm: bool = False
    ) -> list[Grade]:
        """Grade ready judge prompts, in model batches of ``rows_per_batch`` (longest first: less padding)."""
        n_cot = self.config.n_cot if n_cot is None else n_cot
        seed = self.config.seed if seed is None else seed
        if n_cot < 1:
            raise ValueError(f"`n_cot` must be >= 1, got {n_cot}.")
        seen = []
        for index, prompt in enumerate(prompts):
            try:
                seen.append(self.judge_prompt(prompt))
            except ValueError as error:
                raise ValueError(f"Prompt {index}: {error}") from None
        predictor = JudgePredictor.from_config(self.backend, self.config, n_cot, seed)
        order = sorted(range(len(prompts)), key=lambda index: -len(prompts[index]))
        step = self.config.rows_per_batch(n_cot)
        grades: list[Grade | None] = [None] * len(prompts)
        with tqdm(total=len(prompts), desc="tract judge", unit="row", disable=not use_tqdm) as progress:
            for start in range(0, len(order), step):
                batch = order[start : start + step]
                keys = [prompt_key(prompts[index]) for index in batch]
                judge_prompts = [JudgePrompt.from_instruction(seen[index]) for index in batch]
                predictions = predictor.predict(judge_prompts, keys)
                for index, key, prompt, prediction in zip(batch, keys, judge_prompts, predictions, strict=True):
                    truncated = self.backend.contexts.was_shortened(prompt)
                    grades[index] = grade_on_scale(prediction, self.values, key, self.config.min_score_mass, truncated)
                progress.update(len(batch))
        return grades
