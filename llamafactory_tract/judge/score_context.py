"""The exact tokens a judge sees before its score token, built the way training tokenises them.

Training encodes ``<cot> <delimiter> <literal>`` as the assistant turn of the LLaMA-Factory
template and predicts the score token from the position before it. Inference must condition on
the same ids, so it re-encodes the sampled CoT through the same template (and the same
``locate_score_token``) instead of appending the delimiter to whatever ids were sampled: the
sampled ids may tokenise the same text differently, and tokenizers disagree on the gap tokens
between the delimiter and the score (SmolLM2 needs an extra 'Ġ').
"""

from typing import TYPE_CHECKING

from llamafactory_tract.data.processor import truncate_prompt_middle
from llamafactory_tract.data.score_tokens import ScoreTokens, locate_score_token

if TYPE_CHECKING:
    from llamafactory.data.template import Template
    from transformers import PreTrainedTokenizer

    from llamafactory_tract.judge.backend import JudgePrompt

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

    @property
    def delimiter(self) -> str:
        return self.score_tokens.score_format.delimiter

    @property
    def stop_texts(self) -> tuple[str, ...]:
        """Texts that end a sampled CoT: the delimiter, then any configured markers (e.g. '[RESULT]')."""
        return (self.delimiter, *self.cot_end_markers)

    def prompt_ids(self, prompt: "JudgePrompt") -> list[int]:
        """The prompt part of ``template.encode_oneturn`` (default system applied as in training)."""
        messages = prompt.messages + [{"role": "assistant", "content": ""}]
        prompt_ids, _ = self.template.encode_oneturn(self.tokenizer, messages, prompt.system, prompt.tools)
        return self._truncate(prompt_ids)

    def score_context(self, prompt: "JudgePrompt", cot: str) -> list[int]:
        """prompt ids + the response ids before the score token of ``format_response(cot, literal)``."""
        score_format = self.score_tokens.score_format
        literal = score_format.values[0]
        response = score_format.format_response(cot, literal, self.score_tokens.with_cot)
        messages = prompt.messages + [{"role": "assistant", "content": response}]
        prompt_ids, response_ids = self.template.encode_oneturn(self.tokenizer, messages, prompt.system, prompt.tools)
        index = locate_score_token(self.template, self.tokenizer, self.score_tokens, response_ids, cot, literal)
        return self._truncate(prompt_ids) + response_ids[:index]

    def split_generated(self, text: str, closed_by_default: str) -> tuple[str, str]:
        """(CoT, how it was closed): the text before the first delimiter or marker, else all of it."""
        found = [(text.find(stop), stop) for stop in self.stop_texts if stop in text]
        if not found:
            return text.strip(), closed_by_default
        position, stop = min(found)
        return text[:position].strip(), CLOSED_BY_DELIMITER if stop == self.delimiter else CLOSED_BY_MARKER

    def _truncate(self, prompt_ids: list[int]) -> list[int]:
        return prompt_ids if self.max_prompt_len is None else truncate_prompt_middle(prompt_ids, self.max_prompt_len)
