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

"""Request bodies of the judge server; pydantic refuses malformed ones with a 422 that names the field."""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

Text = Annotated[str, StringConstraints(min_length=1, pattern=r"\S")]


class RubricBody(BaseModel):
    """prometheus-eval's ``SCORE_RUBRIC_TEMPLATE`` fields."""

    model_config = ConfigDict(extra="forbid")

    criteria: Text
    score1_description: Text
    score2_description: Text
    score3_description: Text
    score4_description: Text
    score5_description: Text


class JudgedItem(BaseModel):
    """What every graded item has besides its response(s)."""

    model_config = ConfigDict(extra="forbid")

    instruction: Text
    rubric: Text | RubricBody
    reference_answer: Text | None = None
    id: str | int | None = Field(default=None, description="echoed back; it does not change the grade")

    def judge_fields(self, response: str) -> tuple[str, str, str | dict[str, str], str | None]:
        """``absolute_prompt``'s arguments for one of this item's responses."""
        rubric = self.rubric if isinstance(self.rubric, str) else self.rubric.model_dump()
        return self.instruction, response, rubric, self.reference_answer


class GradeItem(JudgedItem):
    response: Text


class RelativeGradeItem(JudgedItem):
    response_a: Text
    response_b: Text


class JudgeSettings(BaseModel):
    """Per-request settings, strictly typed: ``"seed": "42"`` or ``42.0`` is refused, not read as 42."""

    model_config = ConfigDict(extra="forbid")

    n_cot: int | None = Field(default=None, ge=1, strict=True, description="CoTs per item (default: the server's)")
    seed: int | None = Field(default=None, strict=True, description="sampling seed (default: the server's)")


class GradeRequest(JudgeSettings):
    items: list[GradeItem] = Field(min_length=1)


class RelativeGradeRequest(JudgeSettings):
    items: list[RelativeGradeItem] = Field(min_length=1)


class RewardLabel(BaseModel):
    """An OpenRLHF label (``--label_key``) that carries a row's rubric and/or reference answer."""

    model_config = ConfigDict(extra="forbid")

    rubric: Text | RubricBody | None = None
    reference_answer: Text | None = None


class RewardRequest(BaseModel):
    """OpenRLHF's remote reward-model request (``--remote_rm_url``), as v0.11.0 posts it to ``/get_reward``.

    ``query[i]`` is the decoded prompt + response, ``prompts[i]`` the prompt it starts with, ``labels[i]``
    the dataset label: ``""`` without ``--label_key``, a reference answer, or a ``RewardLabel`` object.
    Unknown fields are ignored rather than refused: the protocol is OpenRLHF's, and a field added there
    must not fail every reward request of a training run.
    """

    model_config = ConfigDict(extra="ignore")

    query: list[str] = Field(min_length=1)
    prompts: list[str]
    labels: list[str | RewardLabel | None] | None = None

    @model_validator(mode="after")
    def _one_entry_per_query(self) -> "RewardRequest":
        for name in ("prompts", "labels"):
            entries = getattr(self, name)
            if entries is not None and len(entries) != len(self.query):
                raise ValueError(f"`{name}` has {len(entries)} entries for {len(self.query)} queries")
        return self
