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

"""The ``cotraft`` dataset processor: canonical response, template encoding, score position.

Each row becomes ``input_ids``/``labels`` exactly as LLaMA-Factory's supervised processor would
build them, except that the score token is masked out of the labels and its position and the
target score are stored (``score_index``, ``score_target``). Like LLaMA-Factory's processors it
is built from ``(template, tokenizer, processor, data_args)``, with our keys in ``data_args``.
Rows that cannot be trained on correctly are not dropped here: they keep a reason, and
``validation.py`` reports and filters them (streaming datasets included). The TRACT authors' opt-in
data rules (``authors_rules.py``) are applied here too, and each row records what they did so the
counts can be reported.
"""

from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llamafactory.data.processor.processor_utils import DatasetProcessor
from llamafactory.extras.constants import IGNORE_INDEX

from llamafactory_tract.data.authors_rules import has_delimiter, missing_delimiter_reason, prompt_rules_of
from llamafactory_tract.data.row_origin import ORIGIN_DATASET_COLUMN, ORIGIN_ROW_COLUMN
from llamafactory_tract.data.score_format import (
    PROMETHEUS_RESULT_MARKER,
    InvalidJudgeResponse,
    MissingScore,
    score_format_of,
)
from llamafactory_tract.data.score_tokens import ScoreTokens, locate_score_token, resolve_score_tokens

if TYPE_CHECKING:
    from llamafactory_tract.hparams.data_args import TractDataArguments

INVALID_REASON_COLUMN = "tract_invalid_reason"
TRUNCATED_COLUMN = "tract_prompt_truncated"
PROMPT_REWRITTEN_COLUMN = "tract_prompt_rewritten"
REFERENCE_COLUMN = "tract_reference_removed"
# REFERENCE_COLUMN values: the rule is off or was not reached, the prompt had no reference, it was removed.
REFERENCE_NOT_APPLIED, REFERENCE_ABSENT, REFERENCE_REMOVED = -1, 0, 1


@dataclass
class EncodedJudgeExample:
    input_ids: list[int]
    labels: list[int]
    score_index: int
    prompt_truncated: bool


def truncate_prompt_middle(prompt_ids: list[int], max_length: int) -> list[int]:
    """Keep the start (task, rubric header) and the end (template's assistant header) of a long prompt."""
    if len(prompt_ids) <= max_length:
        return prompt_ids
    head = max_length // 2
    return prompt_ids[:head] + prompt_ids[len(prompt_ids) - (max_length - head) :]


def check_single_cot_end(cot: str, delimiter: str) -> None:
    """Reject a CoT that already contains the delimiter or ``[RESULT]``.

    The score is the one after the last occurrence, but inference ends a sampled CoT at the first
    one and reads the score there: training on the earlier occurrence (and the digit after it) as
    ordinary CoT text would teach the judge to stop, and be scored, too early.
    """
    for marker in (delimiter, PROMETHEUS_RESULT_MARKER):
        if marker in cot:
            raise InvalidJudgeResponse(
                f"{marker!r} also appears inside the CoT (inference ends a CoT at its first occurrence)"
            )


@dataclass
class CoTRaftDatasetProcessor(DatasetProcessor):
    data_args: "TractDataArguments"
    score_tokens: ScoreTokens = field(init=False)
    score_columns: dict[str, str] = field(default_factory=dict)
    """Dataset name -> its score column (``columns.score`` in dataset_info.json), to name an empty score cell."""

    def __post_init__(self) -> None:
        with_cot = not self.data_args.cotraft_drop_cot
        self.score_tokens = resolve_score_tokens(
            self.template, self.tokenizer, score_format_of(self.data_args), with_cot
        )

    def encode_example(
        self, prompt: list[dict[str, str]], response: str, system: str | None, tools: str | None
    ) -> tuple[EncodedJudgeExample, float]:
        """Encode one judge example; raise InvalidJudgeResponse with the reason if it cannot be trained on."""
        score_format = self.score_tokens.score_format
        cot, literal = score_format.split_response(response)
        with_cot = self.score_tokens.with_cot
        if with_cot:
            if self.data_args.cotraft_require_delimiter and not has_delimiter(response, score_format.delimiter):
                raise InvalidJudgeResponse(missing_delimiter_reason(score_format.delimiter))
            if not cot.strip():
                raise InvalidJudgeResponse("empty CoT")
            check_single_cot_end(cot, score_format.delimiter)
        text = score_format.format_response(cot, literal, with_cot)
        messages = prompt + [{"role": "assistant", "content": text}]
        prompt_ids, response_ids = self.template.encode_oneturn(self.tokenizer, messages, system, tools)
        score_in_response = locate_score_token(
            self.template, self.tokenizer, self.score_tokens, response_ids, cot, literal
        )
        if self.template.efficient_eos:
            response_ids = response_ids + [self.tokenizer.eos_token_id]

        kept_prompt = self._shortened_prompt(prompt_ids, len(response_ids))
        labels = [IGNORE_INDEX] * len(kept_prompt) + response_ids
        score_index = len(kept_prompt) + score_in_response
        if not self.data_args.cotraft_score_in_ce:
            labels[score_index] = IGNORE_INDEX
        encoded = EncodedJudgeExample(
            input_ids=kept_prompt + response_ids,
            labels=labels,
            score_index=score_index,
            prompt_truncated=len(kept_prompt) < len(prompt_ids),
        )
        return encoded, float(literal)

    def _shortened_prompt(self, prompt_ids: list[int], response_length: int) -> list[int]:
        """The prompt shortened in the middle to fit ``cutoff_len``, if enough of it survives."""
        cutoff = self.data_args.cutoff_len
        if response_length >= cutoff:
            raise InvalidJudgeResponse(
                f"response of {response_length} tokens leaves no room for the prompt within cutoff_len={cutoff}"
            )
        kept = truncate_prompt_middle(prompt_ids, cutoff - response_length)
        min_share = self.data_args.cotraft_min_prompt_share
        if len(kept) < min_share * len(prompt_ids):
            raise InvalidJudgeResponse(
                f"only {len(kept)} of {len(prompt_ids)} prompt tokens fit beside a {response_length}-token response "
                f"within cutoff_len={cutoff} (below cotraft_min_prompt_share={min_share})"
            )
        return kept

    def preprocess_dataset(self, examples: dict[str, list[Any]]) -> dict[str, list]:
        model_inputs = defaultdict(list)
        rules = prompt_rules_of(self.data_args)
        for i in range(len(examples["_prompt"])):
            reason = ""
            encoded, target = EncodedJudgeExample([], [], -1, False), 0.0
            rewritten, reference = False, REFERENCE_NOT_APPLIED
            try:
                if len(examples["_prompt"][i]) % 2 != 1 or len(examples["_response"][i]) != 1:
                    raise InvalidJudgeResponse("expected one prompt and exactly one response")
                prompt = examples["_prompt"][i]
                if rules.active:  # the judge prompt is the last (user) message
                    rewrite = rules.apply(prompt[-1]["content"])
                    prompt = [*prompt[:-1], {**prompt[-1], "content": rewrite.text}]
                    rewritten = rewrite.rewritten
                    if rewrite.reference_removed is not None:
                        reference = REFERENCE_REMOVED if rewrite.reference_removed else REFERENCE_ABSENT
                encoded, target = self.encode_example(
                    prompt,
                    examples["_response"][i][0]["content"],
                    examples["_system"][i],
                    examples["_tools"][i],
                )
            except InvalidJudgeResponse as error:
                reason = self._invalid_reason(error, examples[ORIGIN_DATASET_COLUMN][i])

            model_inputs["input_ids"].append(encoded.input_ids)
            model_inputs["attention_mask"].append([1] * len(encoded.input_ids))
            model_inputs["labels"].append(encoded.labels)
            model_inputs["score_index"].append(encoded.score_index)
            model_inputs["score_target"].append(target)
            model_inputs["images"].append(examples["_images"][i])
            model_inputs["videos"].append(examples["_videos"][i])
            model_inputs["audios"].append(examples["_audios"][i])
            model_inputs[ORIGIN_DATASET_COLUMN].append(examples[ORIGIN_DATASET_COLUMN][i])
            model_inputs[ORIGIN_ROW_COLUMN].append(examples[ORIGIN_ROW_COLUMN][i])
            model_inputs[INVALID_REASON_COLUMN].append(reason)
            model_inputs[TRUNCATED_COLUMN].append(encoded.prompt_truncated)
            model_inputs[PROMPT_REWRITTEN_COLUMN].append(rewritten)
            model_inputs[REFERENCE_COLUMN].append(reference)
        return model_inputs

    def _invalid_reason(self, error: InvalidJudgeResponse, dataset: str) -> str:
        """The reason a row is dropped; a row without a score whose dataset has a score column had an empty cell."""
        column = self.score_columns.get(dataset)
        if isinstance(error, MissingScore) and column:
            return (
                f"empty score: column '{column}' has no value in this row (null, NaN or blank); give it one of "
                f"score_values {list(self.score_tokens.score_format.values)}"
            )
        return str(error)

    def print_data_example(self, example: dict[str, Any]) -> None:
        if example.get(INVALID_REASON_COLUMN):
            print(
                f"(dataset '{example[ORIGIN_DATASET_COLUMN]}' row {example[ORIGIN_ROW_COLUMN]} is invalid and will "
                f"be dropped: {example[INVALID_REASON_COLUMN]})"
            )
            return
        valid_labels = [token for token in example["labels"] if token != IGNORE_INDEX]
        score_index = example["score_index"]
        print("input_ids:\n{}".format(example["input_ids"]))
        print("inputs:\n{}".format(self.tokenizer.decode(example["input_ids"], skip_special_tokens=False)))
        print("label_ids:\n{}".format(example["labels"]))
        print(f"labels:\n{self.tokenizer.decode(valid_labels, skip_special_tokens=False)}")
        score_token = self.tokenizer.convert_ids_to_tokens(example["input_ids"][score_index])
        print(f"score token: {score_token!r} at position {score_index}, target {example['score_target']}")
