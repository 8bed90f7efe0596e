"""The ``cotraft`` dataset processor: canonical response, template encoding, score position.

Each row becomes ``input_ids``/``labels`` exactly as LLaMA-Factory's supervised processor would
build them, except that the score token is masked out of the labels and its position and the
target score are stored (``score_index``, ``score_target``). Rows that cannot be trained on
correctly are not dropped silently: they are marked with a reason, counted and reported by
``preprocess.py``.
"""

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from llamafactory.data.processor.processor_utils import DatasetProcessor
from llamafactory.extras.constants import IGNORE_INDEX

from llamafactory_tract.data.row_origin import ORIGIN_DATASET_COLUMN, ORIGIN_ROW_COLUMN
from llamafactory_tract.data.score_format import InvalidJudgeResponse
from llamafactory_tract.data.score_tokens import ScoreTokens, locate_score_token

INVALID_REASON_COLUMN = "tract_invalid_reason"
TRUNCATED_COLUMN = "tract_prompt_truncated"


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


@dataclass
class CoTRaftDatasetProcessor(DatasetProcessor):
    score_tokens: ScoreTokens | None = None
    score_in_ce: bool = False

    def encode_example(
        self, prompt: list[dict[str, str]], response: str, system: str | None, tools: str | None
    ) -> tuple[EncodedJudgeExample, float]:
        """Encode one judge example; raise InvalidJudgeResponse with the reason if it cannot be trained on."""
        score_format = self.score_tokens.score_format
        cot, literal = score_format.split_response(response)
        with_cot = self.score_tokens.with_cot
        if with_cot and not cot.strip():
            raise InvalidJudgeResponse("empty CoT")
        text = score_format.format_response(cot, literal, with_cot)
        messages = prompt + [{"role": "assistant", "content": text}]
        prompt_ids, response_ids = self.template.encode_oneturn(self.tokenizer, messages, system, tools)
        score_in_response = locate_score_token(
            self.template, self.tokenizer, self.score_tokens, response_ids, cot, literal
        )
        if self.template.efficient_eos:
            response_ids = response_ids + [self.tokenizer.eos_token_id]

        cutoff = self.data_args.cutoff_len
        if len(response_ids) >= cutoff:
            raise InvalidJudgeResponse(
                f"response of {len(response_ids)} tokens leaves no room for the prompt within cutoff_len={cutoff}"
            )
        kept_prompt = truncate_prompt_middle(prompt_ids, cutoff - len(response_ids))
        labels = [IGNORE_INDEX] * len(kept_prompt) + response_ids
        score_index = len(kept_prompt) + score_in_response
        if not self.score_in_ce:
            labels[score_index] = IGNORE_INDEX
        encoded = EncodedJudgeExample(
            input_ids=kept_prompt + response_ids,
            labels=labels,
            score_index=score_index,
            prompt_truncated=len(kept_prompt) < len(prompt_ids),
        )
        return encoded, float(literal)

    def preprocess_dataset(self, examples: dict[str, list[Any]]) -> dict[str, list]:
        model_inputs = defaultdict(list)
        for i in range(len(examples["_prompt"])):
            reason = ""
            encoded, target = EncodedJudgeExample([], [], -1, False), 0.0
            try:
                if len(examples["_prompt"][i]) % 2 != 1 or len(examples["_response"][i]) != 1:
                    raise InvalidJudgeResponse("expected one prompt and exactly one response")
                encoded, target = self.encode_example(
                    examples["_prompt"][i],
                    examples["_response"][i][0]["content"],
                    examples["_system"][i],
                    examples["_tools"][i],
                )
            except InvalidJudgeResponse as error:
                reason = str(error)

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
        return model_inputs

    def print_data_example(self, example: dict[str, Any]) -> None:
        valid_labels = [token for token in example["labels"] if token != IGNORE_INDEX]
        score_index = example["score_index"]
        print("input_ids:\n{}".format(example["input_ids"]))
        print("inputs:\n{}".format(self.tokenizer.decode(example["input_ids"], skip_special_tokens=False)))
        print("label_ids (score token masked):\n{}".format(example["labels"]))
        print(f"labels:\n{self.tokenizer.decode(valid_labels, skip_special_tokens=False)}")
        score_token = self.tokenizer.convert_ids_to_tokens(example["input_ids"][score_index])
        print(f"score token: {score_token!r} at position {score_index}, target {example['score_target']}")
