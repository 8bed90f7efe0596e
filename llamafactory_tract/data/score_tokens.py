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

"""Locate the score token for any tokenizer and chat template.

Tokenizers disagree on how ``... score is 4`` splits (SmolLM2 and tiktoken-style: ``'Ġis' 'Ġ' '4'``;
GPT-2-style byte-level BPE: ``'Ġis' 'Ġ4'``; SentencePiece: ``'▁is' '▁' '4'``) and templates
append end-of-turn tokens.
Instead of assuming a position, we encode the same response with two different scores: the
token ids differ at exactly one index, which is the score token, and the two ids there are
the ids of the two score literals in that context. Anything else (a literal spanning several
tokens, merging with neighbours) is rejected instead of being trained on a wrong position.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING

from llamafactory_tract.data.score_format import InvalidJudgeResponse, ScoreFormat
from llamafactory_tract.extras.errors import TractUserError

if TYPE_CHECKING:
    from llamafactory.data.template import Template
    from transformers import PreTrainedTokenizer

_PROBE_COT = "The response is adequate."


class ScoreTokenizationError(TractUserError):
    """The configured score values cannot be single tokens after the delimiter with this tokenizer."""


@dataclass(frozen=True)
class ScoreTokens:
    """Token ids of the score literals, aligned with ``ScoreFormat.values``."""

    score_format: ScoreFormat
    token_ids: tuple[int, ...]
    with_cot: bool = True

    @property
    def numeric_values(self) -> list[float]:
        return self.score_format.numeric_values

    def id_of(self, literal: str) -> int:
        return self.token_ids[self.score_format.values.index(literal)]

    def alternative_literal(self, literal: str) -> str:
        """Another configured literal, used as the probe for locating ``literal``."""
        values = self.score_format.values
        return values[1] if literal == values[0] else values[0]


def encode_response(template: "Template", tokenizer: "PreTrainedTokenizer", response: str) -> list[int]:
    """Response token ids exactly as the template encodes an assistant turn (end-of-turn tokens included)."""
    messages = [{"role": "user", "content": ""}, {"role": "assistant", "content": response}]
    return template.encode_oneturn(tokenizer, messages)[1]


def single_difference(first: list[int], second: list[int]) -> int | None:
    """Index of the only position where two equal-length id lists differ, else None."""
    if len(first) != len(second):
        return None
    differing = [index for index, (a, b) in enumerate(zip(first, second, strict=True)) if a != b]
    return differing[0] if len(differing) == 1 else None


def _score_position(literal: str, encodings: dict[str, list[int]]) -> int | None:
    """Where ``literal``'s encoding differs from another literal's at exactly one position, if anywhere.

    Pairing each literal with every other one blames the literal at fault ('1.5' in ``1,1.5,2``), not its probe.
    """
    for other, other_ids in encodings.items():
        if other != literal and (index := single_difference(encodings[literal], other_ids)) is not None:
            return index
    return None


def resolve_score_tokens(
    template: "Template", tokenizer: "PreTrainedTokenizer", score_format: ScoreFormat, with_cot: bool = True
) -> ScoreTokens:
    """Resolve and validate one token id per score value; raise a configuration error if impossible."""
    values = score_format.values
    encodings = {
        literal: encode_response(template, tokenizer, score_format.format_response(_PROBE_COT, literal, with_cot))
        for literal in values
    }
    positions = {literal: _score_position(literal, encodings) for literal in values}
    not_single = [literal for literal, index in positions.items() if index is None]
    if not_single:
        tails = {literal: tokenizer.convert_ids_to_tokens(encodings[literal])[-8:] for literal in not_single}
        raise ScoreTokenizationError(
            f"Score values {not_single} are not single tokens after {score_format.delimiter!r} with this "
            f"tokenizer/template (response tail tokens: {tails}). Choose `score_values` that are single tokens."
        )
    token_ids = [encodings[literal][positions[literal]] for literal in values]
    if len(set(token_ids)) != len(token_ids):
        raise ScoreTokenizationError(f"Score values {list(values)} map to non-distinct token ids {token_ids}.")
    return ScoreTokens(score_format=score_format, token_ids=tuple(token_ids), with_cot=with_cot)


def locate_score_token(
    template: "Template",
    tokenizer: "PreTrainedTokenizer",
    score_tokens: ScoreTokens,
    response_ids: list[int],
    cot: str,
    literal: str,
) -> int:
    """Index of the score token inside ``response_ids`` (the encoding of ``cot`` scored ``literal``)."""
    probe_literal = score_tokens.alternative_literal(literal)
    probe_response = score_tokens.score_format.format_response(cot, probe_literal, score_tokens.with_cot)
    probe_ids = encode_response(template, tokenizer, probe_response)
    index = single_difference(response_ids, probe_ids)
    if (
        index is None
        or response_ids[index] != score_tokens.id_of(literal)
        or probe_ids[index] != score_tokens.id_of(probe_literal)
    ):
        raise InvalidJudgeResponse("the score is not a single isolated token in this response's tokenization")
    return index
