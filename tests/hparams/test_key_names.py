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

"""One name per setting in training and at inference: the old training names still work, with a message."""

import pytest
from llamafactory.hparams import get_train_args

from llamafactory_tract.data.score_format import score_format_of
from llamafactory_tract.extras.errors import TractUserError
from llamafactory_tract.judge.config import build_judge_config
from tests.helpers.judge_data import write_judge_dataset


@pytest.fixture()
def training(tiny_model_dirs, tmp_path) -> dict:
    model_dir, template = tiny_model_dirs["tiktoken"]
    return dict(
        model_name_or_path=str(model_dir),
        template=template,
        stage="cotraft",
        do_train=True,
        finetuning_type="lora",
        dataset="judge",
        dataset_dir=str(write_judge_dataset(tmp_path / "data")),
        output_dir=str(tmp_path / "out"),
        report_to="none",
    )


def test_an_old_training_key_name_is_read_under_its_new_name_with_a_deprecation_message(training, caplog):
    _, data_args, *_ = get_train_args({**training, "cotraft_remove_reference": True, "cotraft_drop_cot": True})
    assert data_args.remove_reference is True and not hasattr(data_args, "cotraft_remove_reference")
    assert "`cotraft_remove_reference` is deprecated: it is now `remove_reference`" in caplog.text


def test_both_names_of_one_key_stop_and_an_old_name_under_sft_is_refused_as_a_cotraft_key(training):
    with pytest.raises(TractUserError, match="sets both `cotraft_score_only_prompt` and `score_only_prompt`"):
        get_train_args({**training, "cotraft_score_only_prompt": True, "score_only_prompt": True})
    with pytest.raises(TractUserError, match="`remove_reference` is a key of `stage: cotraft`, but this run has"):
        get_train_args({**training, "stage": "sft", "cotraft_remove_reference": True})


@pytest.mark.parametrize("values", ["1,2,3,4,5", [1, 2, 3, 4, 5], ["1", "2", "3", "4", "5"]])
def test_score_values_are_a_comma_string_or_a_list_in_training_and_at_inference(training, tiny_model_dirs, values):
    _, data_args, *_ = get_train_args({**training, "score_values": values})
    assert score_format_of(data_args).values == ("1", "2", "3", "4", "5")
    model_dir, template = tiny_model_dirs["tiktoken"]
    judge = build_judge_config({"model_name_or_path": str(model_dir), "template": template, "score_values": values})
    assert judge.score_format.values == ("1", "2", "3", "4", "5")


def test_the_judge_takes_the_old_training_names_too(tiny_model_dirs, caplog):
    model_dir, template = tiny_model_dirs["tiktoken"]
    raw = {"model_name_or_path": str(model_dir), "template": template, "predictor": "rail"}
    judge = build_judge_config({**raw, "cotraft_score_only_prompt": True, "cotraft_remove_reference": True})
    assert judge.score_only_prompt and judge.remove_reference
    assert "`cotraft_score_only_prompt` is deprecated: it is now `score_only_prompt`" in caplog.text
    assert (
        judge.prediction_hash()
        == build_judge_config({**raw, "score_only_prompt": True, "remove_reference": True}).prediction_hash()
    )
