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

"""Normalise judge responses to ``<CoT> <delimiter> <score>`` and validate the score.

Real data carries the score in several shapes (CoT ending in the delimiter, Prometheus'
``[RESULT] y``, a separate column that the converter appends as ``[RESULT] y``). Every
shape is reduced to one canonical text so that training and inference see the same string.
"""

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from llamafactory_tract.extras.constants import DEFAULT_DELIMITER, DEFAULT_SCORE_VALUES
from llamafactory_tract.extras.errors import TractUserError

if TYPE_CHECKING:
    from llamafactory_tract.hparams.data_args import TractDataArguments

PROMETHEUS_RESULT_MARKER = "[RESULT]"


class InvalidJudgeResponse(ValueError):
    """A training row whose response cannot be turned into (CoT, score); the message says why."""


class MissingScore(InvalidJudgeResponse):
    """The response ends with no score (with a score column: that row's cell is empty, null or NaN)."""


@dataclass(frozen=True)
class ScoreFormat:
    """How a CoT ends and which score literals exist (paper: d = 'So the overall score is', Y = 1..5)."""

    delimiter: str = DEFAULT_DELIMITER
    values: tuple[str, ...] = DEFAULT_SCORE_VALUES

    def __post_init__(self) -> None:
        if not self.delimiter.strip():
            raise ValueError("`score_delimiter` must be a non-empty string.")
        if len(self.values) < 2:
            raise ValueError(f"`score_values` needs at least two values, got {list(self.values)}.")
        not_numbers = [value for value in self.values if _as_number(value) is None]
        if not_numbers:
            raise ValueError(f"`score_values` entries {not_numbers} are not numbers (in {list(self.values)}).")
        seen: dict[float, str] = {}
        for value in self.values:
            if (number := _as_number(value)) in seen:
                raise ValueError(f"`score_values` lists the same score twice: {seen[number]!r} and {value!r}.")
            seen[number] = value

    @property
    def numeric_values(self) -> list[float]:
        return [float(value) for value in self.values]

    def canonical_literal(self, raw: str) -> str:
        """Map '4', '4.0' or ' 4. ' to the configured literal '4'; raise if it is not a configured score."""
        text = raw.strip().rstrip(".").strip()
        number = _as_number(text)
        if number is None:
            raise InvalidJudgeResponse(f"unparsable score {raw.strip()[:30]!r}")
        for literal, value in zip(self.values, self.numeric_values, strict=True):
            if math.isclose(number, value):
                return literal
        raise InvalidJudgeResponse(f"score {text!r} is not one of the configured score_values {list(self.values)}")

    def format_response(self, cot: str, score_literal: str, with_cot: bool = True) -> str:
        """The canonical training/inference text; without CoT (RAFT, Table 2 B.4) it is the score alone."""
        if not with_cot:
            return score_literal
        return f"{cot} {self.delimiter} {score_literal}"

    def split_response(self, response: str) -> tuple[str, str]:
        """Return (CoT, canonical score literal) for any supported response shape.

        The score is the one after the last ``[RESULT]``, else after the delimiter that ends the text;
        any earlier occurrence stays in the returned CoT (the training processor rejects such rows).
        """
        text = response.strip()
        explicit_score = None
        if PROMETHEUS_RESULT_MARKER in text:
            text, _, raw_score = text.rpartition(PROMETHEUS_RESULT_MARKER)
            explicit_score = self.canonical_literal(raw_score)
            text = text.strip()

        cot, delimited_score = self._strip_delimiter(text)
        if explicit_score is None and delimited_score is None:
            raise MissingScore(
                f"missing score: the response ends neither with '{self.delimiter} <score>' nor with "
                f"'{PROMETHEUS_RESULT_MARKER} <score>'"
            )
        if explicit_score is not None and delimited_score is not None and explicit_score != delimited_score:
            raise InvalidJudgeResponse(
                f"conflicting scores: CoT says {delimited_score}, {PROMETHEUS_RESULT_MARKER} says {explicit_score}"
            )
        return cot, explicit_score if explicit_score is not None else delimited_score

    def _strip_delimiter(self, text: str) -> tuple[str, str | None]:
        """Remove a trailing '<delimiter> [score]' and return the score literal found, if any."""
        match = re.search(rf"{re.escape(self.delimiter)}\s*:?\s*([^\s]*)\s*$", text)
        if match is None:
            return text, None
        cot = text[: match.start()].rstrip()
        raw_score = match.group(1)
        return cot, (self.canonical_literal(raw_score) if raw_score.strip(" .:") else None)


def _as_number(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def score_format_of(data_args: "TractDataArguments") -> ScoreFormat:
    """The score format the training keys ``score_delimiter`` / ``score_values`` name (a comma-separated string)."""
    values = data_args.score_values
    literals = values if isinstance(values, (list, tuple)) else values.split(",")
    try:
        return ScoreFormat(delimiter=data_args.score_delimiter, values=tuple(str(value).strip() for value in literals))
    except ValueError as error:
        raise TractUserError(str(error)) from None
