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

"""cotraft preprocessing through LLaMA-Factory's own get_dataset: every response form and bad-input case."""

import json
import re

import pytest
from llamafactory.extras.constants import IGNORE_INDEX

from llamafactory_tract.data.validation import InvalidTrainingData
from tests.helpers.judge_data import load_cotraft_data

PROMPT = "###Task Description: grade the response.\n###Response to evaluate: Paris is in France."
JUDGE_ROWS = [
    {"instruction": PROMPT, "output": "Correct and concise. So the overall score is 4"},  # 0 CoT form
    {"instruction": PROMPT, "output": "Feedback: correct. [RESULT] 5"},  # 1 Prometheus form
    {"instruction": PROMPT, "output": "Correct, but no score."},  # 2 missing score
    {"instruction": PROMPT, "output": "Correct. [RESULT] five"},  # 3 unparsable score
    {"instruction": PROMPT, "output": "Correct. [RESULT] 6"},  # 4 score out of range
    {"instruction": PROMPT, "output": "So the overall score is 3"},  # 5 empty CoT
    {"instruction": PROMPT, "output": "word " * 300 + "So the overall score is 2"},  # 6 response > cutoff
    {"instruction": PROMPT + " filler" * 60, "output": "Long prompt. So the overall score is 1"},  # 7 shortened
    {"instruction": PROMPT + " filler" * 400, "output": "Longer prompt. So the overall score is 2"},  # 8 < min share
    {"instruction": PROMPT, "output": "So the overall score is 2 at first. On reflection, So the overall score is 4"},
    {"instruction": PROMPT, "output": "Feedback: [RESULT] 3 was a typo. [RESULT] 4"},  # 10 marker twice
]
SCORE_COLUMN_ROWS = [{"question": PROMPT, "feedback": "Correct and well argued.", "grade": 3}]
DATASET_INFO = {
    "judge": {"file_name": "judge.json", "columns": {"prompt": "instruction", "response": "output"}},
    "judge_scored": {
        "file_name": "judge_scored.json",
        "columns": {"prompt": "question", "response": "feedback", "score": "grade"},
    },
}


@pytest.fixture()
def dataset_dir(tmp_path):
    (tmp_path / "judge.json").write_text(json.dumps(JUDGE_ROWS))
    (tmp_path / "judge_scored.json").write_text(json.dumps(SCORE_COLUMN_ROWS))
    (tmp_path / "dataset_info.json").write_text(json.dumps(DATASET_INFO))
    return tmp_path


def load(tiny_model_dirs, dataset_dir, **overrides):
    overrides = {"dataset": "judge,judge_scored", "cutoff_len": 256, **overrides}
    tokenizer, score_tokens, module = load_cotraft_data(tiny_model_dirs["tiktoken"], dataset_dir, **overrides)
    return tokenizer, score_tokens, module["train_dataset"]


def test_valid_rows_are_kept_with_the_score_masked_and_located(tiny_model_dirs, dataset_dir, caplog):
    tokenizer, score_tokens, dataset = load(tiny_model_dirs, dataset_dir)
    assert sorted(dataset["score_target"]) == [1.0, 3.0, 4.0, 5.0]  # rows 0, 1, 7 and the score-column row
    for example in dataset:
        index = example["score_index"]
        literal = str(int(example["score_target"]))
        assert example["input_ids"][index] == score_tokens.id_of(literal)
        assert example["labels"][index] == IGNORE_INDEX
        assert len(example["input_ids"]) <= 256
        # The CoT before the score and the end-of-turn tokens after it are trained with CE.
        assert example["labels"][index - 1] != IGNORE_INDEX
        assert example["labels"][-1] != IGNORE_INDEX
    report = caplog.text
    assert "8 of 12 training rows are invalid" in report
    assert "dataset 'judge' row 2: missing score" in report
    assert "dataset 'judge' row 3: unparsable score 'five'" in report
    assert "dataset 'judge' row 4: score '6' is not one of the configured score_values" in report
    assert "dataset 'judge' row 5: empty CoT" in report
    assert "dataset 'judge' row 6: response of" in report
    assert "1 training prompts were shortened in the middle to fit cutoff_len" in report


def test_a_prompt_shortened_below_the_minimum_share_is_dropped(tiny_model_dirs, dataset_dir, caplog):
    """Row 7 keeps more than half its prompt and trains; row 8 would keep a sliver and is dropped."""
    _, _, dataset = load(tiny_model_dirs, dataset_dir)
    assert 2.0 not in dataset["score_target"]
    assert re.search(r"row 8: only \d+ of \d+ prompt tokens fit .*\(below cotraft_min_prompt_share=0.5\)", caplog.text)
    _, _, dataset = load(tiny_model_dirs, dataset_dir, cotraft_min_prompt_share=0.0)
    assert sorted(dataset["score_target"]) == [1.0, 2.0, 3.0, 4.0, 5.0]
    with pytest.raises(ValueError, match="cotraft_min_prompt_share` must be in \\[0, 1\\]"):
        load(tiny_model_dirs, dataset_dir, cotraft_min_prompt_share=1.5)


def test_a_cot_containing_the_delimiter_or_result_marker_is_dropped(tiny_model_dirs, dataset_dir, caplog):
    """Inference ends a CoT at the first delimiter / [RESULT]: an earlier one would be trained as plain CoT."""
    load(tiny_model_dirs, dataset_dir)
    assert "row 9: 'So the overall score is' also appears inside the CoT" in caplog.text
    assert "row 10: '[RESULT]' also appears inside the CoT" in caplog.text


def test_a_missing_score_column_is_an_error_naming_dataset_and_column(tiny_model_dirs, dataset_dir):
    info = json.loads((dataset_dir / "dataset_info.json").read_text())
    info["judge_scored"]["columns"]["score"] = "grades"
    (dataset_dir / "dataset_info.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match="Dataset 'judge_scored.json'.*score column 'grades'.*not in the data"):
        load(tiny_model_dirs, dataset_dir, dataset="judge_scored")


def test_a_score_column_on_a_sharegpt_dataset_is_refused(tiny_model_dirs, dataset_dir):
    info = json.loads((dataset_dir / "dataset_info.json").read_text())
    info["judge_scored"]["formatting"] = "sharegpt"
    (dataset_dir / "dataset_info.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match="alpaca-format datasets only, this one is `formatting: sharegpt`"):
        load(tiny_model_dirs, dataset_dir, dataset="judge_scored")


# LLaMA-Factory 0.9.5 streams a local file as `num_shards=dataloader_num_workers` shards: 0 shards yield no rows.
STREAMING = {"dataset": "judge", "streaming": True, "max_steps": 1, "dataloader_num_workers": 1}


def test_streamed_rows_are_validated_the_same_way(tiny_model_dirs, dataset_dir, caplog):
    _, _, dataset = load(tiny_model_dirs, dataset_dir, **STREAMING)
    assert sorted(example["score_target"] for example in dataset) == [1.0, 4.0, 5.0]
    for row in (2, 3, 4, 5, 6, 8, 9, 10):
        assert f"Dropped invalid streamed training row, dataset 'judge' row {row}:" in caplog.text
    _, _, dataset = load(tiny_model_dirs, dataset_dir, **STREAMING, cotraft_strict_data=True)
    with pytest.raises(InvalidTrainingData, match=r"Invalid streamed training row, dataset 'judge' row \d+: "):
        list(dataset)  # the stream is shuffled: whichever invalid row comes first stops it


def test_strict_mode_turns_drops_into_an_error_naming_dataset_and_rows(tiny_model_dirs, dataset_dir):
    with pytest.raises(InvalidTrainingData, match="dataset 'judge' row 2: missing score") as error:
        load(tiny_model_dirs, dataset_dir, cotraft_strict_data=True)
    assert "dataset 'judge' row 6" in str(error.value)


def test_without_cot_the_response_is_the_score_alone(tiny_model_dirs, dataset_dir):
    tokenizer, score_tokens, dataset = load(tiny_model_dirs, dataset_dir, cotraft_drop_cot=True, dataset="judge")
    # Empty, long or delimiter-laden CoTs are fine without CoT (rows 5, 6, 9, 10); row 8's prompt is still too long.
    assert sorted(dataset["score_target"]) == [1.0, 2.0, 3.0, 4.0, 4.0, 4.0, 5.0]
    for example in dataset:
        trained = [token for token in example["labels"] if token != IGNORE_INDEX]
        assert "overall score" not in tokenizer.decode(trained)
        assert example["input_ids"][example["score_index"] - 1] != score_tokens.id_of("1")


def test_score_in_ce_keeps_the_score_token_in_the_labels(tiny_model_dirs, dataset_dir):
    _, score_tokens, dataset = load(tiny_model_dirs, dataset_dir, cotraft_score_in_ce=True, raft_lambda=0.0)
    for example in dataset:
        index = example["score_index"]
        assert (
            example["labels"][index]
            == example["input_ids"][index]
            == score_tokens.id_of(str(int(example["score_target"])))
        )
