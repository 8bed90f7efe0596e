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

"""The judge card: a cotraft adapter records its base model, template, score format and prompt rules; the
judge commands take them as defaults and stop, naming both values, on a contradiction."""

import json
from pathlib import Path

import pytest
import yaml

from llamafactory_tract.cli import main as tract
from llamafactory_tract.data.judge_card import JUDGE_CARD_FILE, JudgeCard, read_judge_card
from llamafactory_tract.extras.errors import USER_ERROR_EXIT
from llamafactory_tract.judge.api import TractJudge
from llamafactory_tract.judge.config import JudgeConfigError, build_judge_config
from llamafactory_tract.train.cotraft.workflow import judge_card
from tests.helpers.paths import REPO_ROOT

SMOKE_RECIPE = REPO_ROOT / "yaml_configs" / "cpu" / "cotraft_smoke.yaml"


@pytest.fixture()
def trained_card(tiny_model_dirs, tmp_path) -> tuple[Path, Path]:
    """(model folder, adapter folder holding the card ``stage: cotraft`` writes for the smoke recipe's arguments)."""
    from llamafactory.hparams import get_train_args

    model_dir, _ = tiny_model_dirs["tiktoken"]
    recipe = yaml.safe_load(SMOKE_RECIPE.read_text())
    overrides = {"model_name_or_path": str(model_dir), "output_dir": str(tmp_path / "out"), "score_values": "1,2,3"}
    model_args, data_args, *_ = get_train_args({**recipe, **overrides})
    adapter_dir = tmp_path / "adapter"
    adapter_dir.mkdir()
    judge_card(model_args, data_args).save(adapter_dir)
    return model_dir, adapter_dir


def test_the_card_records_what_the_judge_was_trained_with(trained_card):
    model_dir, adapter_dir = trained_card
    assert json.loads((adapter_dir / JUDGE_CARD_FILE).read_text()) == {
        "base_model": str(model_dir),
        "template": "llama3",
        "score_delimiter": "So the overall score is",
        "score_values": ["1", "2", "3"],
        "score_only_prompt": False,
        "remove_reference": False,
    }


def test_keys_left_out_come_from_the_card(trained_card):
    model_dir, adapter_dir = trained_card
    config = build_judge_config({"model_name_or_path": str(model_dir), "adapter_name_or_path": str(adapter_dir)})
    assert config.template == "llama3" and config.score_values == ["1", "2", "3"]
    without_card = build_judge_config({"model_name_or_path": str(model_dir), "template": "llama3"})
    assert without_card.score_values == ["1", "2", "3", "4", "5"]


def test_a_judge_that_contradicts_its_card_stops_before_loading(trained_card):
    model_dir, adapter_dir = trained_card
    with pytest.raises(JudgeConfigError) as refused:
        TractJudge.from_pretrained(str(model_dir), template="mistral", adapter_name_or_path=str(adapter_dir))
    message = str(refused.value)
    assert f"judge card ({adapter_dir / JUDGE_CARD_FILE})" in message
    assert "`template` 'llama3', but the config sets 'mistral'" in message
    with pytest.raises(JudgeConfigError, match=r"base model '.*', but `model_name_or_path` is 'other/SmolLM2'"):
        build_judge_config({"model_name_or_path": "other/SmolLM2", "adapter_name_or_path": str(adapter_dir)})


def test_tract_eval_exits_2_naming_both_values(trained_card, tmp_path, capsys):
    model_dir, adapter_dir = trained_card
    config = tmp_path / "eval.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model_name_or_path": str(model_dir),
                "adapter_name_or_path": str(adapter_dir),
                "score_values": [1, 2, 3, 4, 5],
                "benchmarks": {"mt_bench": {"path": str(tmp_path / "unused.json")}},
            }
        )
    )
    assert tract(["eval", str(config)]) == USER_ERROR_EXIT
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr
    assert "`score_values` ['1', '2', '3'], but the config sets ['1', '2', '3', '4', '5']" in stderr


def test_a_reference_removed_in_training_must_be_removed_at_inference_not_the_reverse(tmp_path):
    adapter_dir = tmp_path / "adapter"
    adapter_dir.mkdir()
    card = JudgeCard("m", "llama3", "So the overall score is", ("1", "2", "3", "4", "5"), False, True)
    card.save(adapter_dir)
    assert read_judge_card(adapter_dir) == card
    judge = {"model_name_or_path": "m", "adapter_name_or_path": str(adapter_dir)}
    assert build_judge_config(judge).remove_reference is True
    with pytest.raises(JudgeConfigError, match=r"`remove_reference` True .*, but the config sets False"):
        build_judge_config({**judge, "remove_reference": False})
    JudgeCard("m", "llama3", "So the overall score is", ("1", "2", "3", "4", "5"), False, False).save(adapter_dir)
    assert build_judge_config({**judge, "remove_reference": True}).remove_reference is True  # D_self, authors' B.4
