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

"""The exact tokens a judge sees before its score token, built the way training tokenises them.

Training encodes ``<cot> <delimiter> <literal>`` as the assistant turn of the LLaMA-Factory
template and predicts the score token from the position before it. Inference must condition on
the same ids, so it re-encodes the sampled CoT through the same template (and the same
``locate_score_token``) instead of appending the delimiter to whatever ids were sampled: the
sampled ids may tokenise the same text differently, and tokenizers disagree on the gap tokens
between the delimiter and the score (SmolLM2 needs an extra 'Ġ').

A prompt longer than ``max_prompt_len`` is shortened in the middle, as training shortens it
(``truncate_prompt_middle``), and counted; a context that would not fit the engine is shortened
the same way, so that no row makes the engine reject a batch.
"""

from typing import TYPE_CHECKING

from llamafactory_tract.data.processor import truncate_prompt_middle
from llamafactory_tract.data.score_tokens import ScoreTokens, locate_score_token
from llamafactory_tract.extras.logging import get_logger

if TYPE_CHECKING:
    from llamafactory.data.template import Template
    from transformers import PreTrainedTokenizer

    from llamafactory_tract.judge.backend import JudgePrompt

logger = get_logger(__name__)

CLOSED_BY_DELIMITER = "delimiter"
CLOSED_BY_MARKER = "marker"
CLOSED_BY_EOS = "eos"
CLOSED_BY_LENGTH = "max_new_tokens"


class ScoreContextBuilder:
    """Prompt ids and score contexts of judge prompts, identical to the training encoding."""

    def __init__(
        self,
        template: "Template",
        tokenizer: "PreTrainedTokenizer",
        score_tokens: ScoreTokens,
        max_prompt_len: int | None = None,
        cot_end_markers: tuple[str, ...] = (),
    ) -> None:
        self.template = template
        self.tokenizer = tokenizer
        self.score_tokens = score_tokens
        self.max_prompt_len = max_prompt_len
        self.cot_end_markers = tuple(marker for marker in cot_end_markers if marker)
        self._shortened: set[int] = set()

    @property
    def shortened_prompts(self) -> int:
        """How many distinct prompts were shortened so far (a prompt sampled n_cot times counts once)."""
        return len(self._shortened)

    @property
    def delimiter(self) -> str:
        return self.score_tokens.score_format.delimiter

    @property
    def stop_texts(self) -> tuple[str, ...]:
        """Texts that end a sampled CoT: the delimiter, then any configured markers (e.g. '[RESULT]')."""
        return (self.delimiter, *self.cot_end_markers)

    def prompt_ids(self, prompt: "JudgePrompt") -> list[int]:
        """The prompt part of ``template.encode_oneturn`` (default system applied as in training)."""
        return self._truncate(self._full_prompt_ids(prompt))

    def was_shortened(self, prompt: "JudgePrompt") -> bool:
        """Whether this prompt was shortened in the middle (``max_prompt_len`` or the engine's length) when read."""
        return hash(tuple(self._full_prompt_ids(prompt))) in self._shortened

    def _full_prompt_ids(self, prompt: "JudgePrompt") -> list[int]:
        messages = prompt.messages + [{"role": "assistant", "content": ""}]
        prompt_ids, _ = self.template.encode_oneturn(self.tokenizer, messages, prompt.system, prompt.tools)
        return prompt_ids

    def score_context(self, prompt: "JudgePrompt", cot: str, max_len: int | None = None) -> list[int]:
        """prompt ids + the response ids before the score token of ``format_response(cot, literal)``.

        With ``max_len`` (the engine's limit), the prompt is shortened further if the whole would not fit.
        """
        score_format = self.score_tokens.score_format
        literal = score_format.values[0]
        response = score_format.format_response(cot, literal, self.score_tokens.with_cot)
        messages = prompt.messages + [{"role": "assistant", "content": response}]
        prompt_ids, response_ids = self.template.encode_oneturn(self.tokenizer, messages, prompt.system, prompt.tools)
        index = locate_score_token(self.template, self.tokenizer, self.score_tokens, response_ids, cot, literal)
        room = None if max_len is None else max(1, max_len - index)
        return self._truncate(prompt_ids, room) + response_ids[:index]

    def split_generated(self, text: str, closed_by_default: str) -> tuple[str, str]:
        """(CoT, how it was closed): the text before the first delimiter or marker, else all of it."""
        found = [(text.find(stop), stop) for stop in self.stop_texts if stop in text]
        if not found:
            return text.strip(), closed_by_default
        position, stop = min(found)
        return text[:position].strip(), CLOSED_BY_DELIMITER if stop == self.delimiter else CLOSED_BY_MARKER

    def _truncate(self, prompt_ids: list[int], room: int | None = None) -> list[int]:
        limits = [limit for limit in (self.max_prompt_len, room) if limit is not None]
        if not limits or len(prompt_ids) <= min(limits):
            return prompt_ids
        key = hash(tuple(prompt_ids))
        if key not in self._shortened:
            self._shortened.add(key)
            if len(self._shortened) == 1:
                logger.warning_rank0(
                    f"A prompt of {len(prompt_ids)} tokens was shortened in the middle to {min(limits)} "
                    f"(max_prompt_len={self.max_prompt_len}), as training shortens prompts; further ones are counted."
                )
        return truncate_prompt_middle(prompt_ids, min(limits))
