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

"""``stage: cotraft`` through an unmodified LLaMA-Factory: CLI, Python API, torchrun, and sft beside it."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from llamafactory_tract.data.judge_card import read_judge_card
from llamafactory_tract.hparams.stage_keys import cotraft_keys
from tests.helpers.judge_data import sgd_full_finetune_config, write_judge_dataset
from tests.helpers.paths import REPO_ROOT

VENV_BIN = Path(sys.executable).parent
SMOKE_RECIPE = REPO_ROOT / "yaml_configs" / "cpu" / "cotraft_smoke.yaml"

pytestmark = pytest.mark.slow


def cli(*args: str, env: dict[str, str] | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", **(env or {})}
    return subprocess.run(
        [str(VENV_BIN / "llamafactory-cli"), *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=timeout,
        cwd=REPO_ROOT,
    )


def train_smoke_recipe(
    tiny_model_dirs, tmp_path: Path, env: dict[str, str] | None = None, recipe: Path = SMOKE_RECIPE, **extra: str
) -> tuple[subprocess.CompletedProcess, Path]:
    """``llamafactory-cli train`` on the CPU smoke recipe (or ``recipe``) with the tiny tiktoken-style model and
    judge rows."""
    model_dir, _ = tiny_model_dirs["tiktoken"]
    output_dir = tmp_path / "out"
    data_dir = write_judge_dataset(tmp_path / "data")
    values = {"model_name_or_path": model_dir, "dataset_dir": data_dir, "output_dir": output_dir, **extra}
    overrides = [f"{key}={value}" for key, value in values.items()]
    result = cli("train", str(recipe), *overrides, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result, output_dir


def read_trainer_log(output_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (output_dir / "trainer_log.jsonl").read_text().splitlines()]


def assert_loss_parts_logged(output_dir: Path, raft_lambda: float = 1.0) -> None:
    train_entries = [entry for entry in read_trainer_log(output_dir) if "loss" in entry]
    assert train_entries, "no training loss was logged"
    for entry in train_entries:
        assert math.isfinite(entry["ce_loss"]) and math.isfinite(entry["raft_loss"])
        assert entry["loss"] == pytest.approx(entry["ce_loss"] + raft_lambda * entry["raft_loss"], rel=1e-3)
    assert (output_dir / "adapter_model.safetensors").is_file()


def test_cli_train_logs_both_loss_parts_plots_them_and_saves_the_adapter(tiny_model_dirs, tmp_path):
    _, output_dir = train_smoke_recipe(
        tiny_model_dirs,
        tmp_path,
        raft_lambda="0.5",
        do_eval="true",
        val_size="4",
        eval_strategy="steps",
        eval_steps="2",
        per_device_eval_batch_size="2",
    )
    assert_loss_parts_logged(output_dir, raft_lambda=0.5)
    eval_entries = [entry for entry in read_trainer_log(output_dir) if "eval_loss" in entry]
    assert eval_entries and all(math.isfinite(entry["eval_rmse"]) for entry in eval_entries)
    eval_results = json.loads((output_dir / "eval_results.json").read_text())
    assert {"eval_ce_loss", "eval_raft_loss", "eval_rmse", "eval_pearson"} <= set(eval_results)
    for plot in ("training_loss.png", "training_ce_loss.png", "training_raft_loss.png", "training_eval_rmse.png"):
        assert (output_dir / plot).is_file(), plot
    card = read_judge_card(output_dir)  # what a judge loading this adapter takes as its defaults
    assert card is not None and (card.template, card.score_delimiter) == ("llama3", "So the overall score is")
    assert card.base_model == str(tiny_model_dirs["tiktoken"][0])


def test_two_process_torchrun_registers_the_stage_and_keeps_the_effective_batch(tiny_model_dirs, tmp_path):
    """The paper's effective batch 8 on 2 processes: 1 per device x 4 accumulation steps x 2."""
    result, output_dir = train_smoke_recipe(
        tiny_model_dirs,
        tmp_path,
        env={"FORCE_TORCHRUN": "1", "NPROC_PER_NODE": "2"},
        per_device_train_batch_size="1",
        cotraft_effective_batch_size="8",
        max_steps="2",
    )
    log = result.stdout + result.stderr
    assert "world size: 2" in log
    assert "Effective batch 8 = 1 per device x 4 accumulation steps x 2 processes." in log
    assert "Total train batch size (w. parallel, distributed & accumulation) = 8" in log
    assert_loss_parts_logged(output_dir)


def test_an_effective_batch_that_does_not_split_says_what_to_set(tiny_model_dirs, tmp_path):
    from llamafactory.hparams import get_train_args

    config = yaml.safe_load(SMOKE_RECIPE.read_text())
    with pytest.raises(ValueError, match="set per_device_train_batch_size to a divisor of 8"):
        get_train_args({**config, "per_device_train_batch_size": 3, "cotraft_effective_batch_size": 8})
    with pytest.raises(ValueError, match="unset gradient_accumulation_steps, it is derived"):
        get_train_args({**config, "gradient_accumulation_steps": 3})


def test_sft_still_trains_beside_the_plugin(tiny_model_dirs, tmp_path):
    recipe = yaml.safe_load(SMOKE_RECIPE.read_text())
    sft_recipe = tmp_path / "sft.yaml"  # the smoke recipe without its cotraft keys, which sft refuses
    sft_recipe.write_text(
        yaml.safe_dump(
            {key: value for key, value in recipe.items() if key not in cotraft_keys()}
            | {"stage": "sft", "gradient_accumulation_steps": 2}
        )
    )
    _, output_dir = train_smoke_recipe(tiny_model_dirs, tmp_path, recipe=sft_recipe)
    entries = [entry for entry in read_trainer_log(output_dir) if "loss" in entry]
    assert entries and all("ce_loss" not in entry for entry in entries)
    assert (output_dir / "adapter_model.safetensors").is_file()


def test_help_lists_the_tract_arguments():
    result = cli("train", "-h")
    flags = ("--raft_lambda", "--score_delimiter", "--score_values", "--cotraft_strict_data", "cotraft")
    for flag in (*flags, "--cotraft_min_prompt_share", "--cotraft_effective_batch_size"):
        assert flag in result.stdout, flag


def full_finetune_one_step(model_dir: Path, data_dir: Path, output_dir: Path, batch: int, accumulation: int):
    from llamafactory.train.tuner import run_exp

    run_exp(
        sgd_full_finetune_config(
            model_dir,
            data_dir,
            output_dir,
            per_device_train_batch_size=batch,
            gradient_accumulation_steps=accumulation,
            max_steps=1,
            learning_rate=1.0,
            max_grad_norm=0.0,
        )
    )
    return load_file(output_dir / "model.safetensors"), read_trainer_log(output_dir)[0]["loss"]


def test_python_api_loss_and_update_do_not_depend_on_the_batch_split(tiny_model_dirs, tmp_path):
    """batch 8 x accumulation 1 and batch 2 x accumulation 4 on the same 8 rows of varied length."""
    model_dir, _ = tiny_model_dirs["tiktoken"]
    data_dir = write_judge_dataset(tmp_path / "data", rows=8)
    weights_8x1, loss_8x1 = full_finetune_one_step(model_dir, data_dir, tmp_path / "8x1", 8, 1)
    weights_2x4, loss_2x4 = full_finetune_one_step(model_dir, data_dir, tmp_path / "2x4", 2, 4)
    initial = load_file(model_dir / "model.safetensors")
    assert loss_8x1 == pytest.approx(loss_2x4, rel=1e-5)
    for name, before in initial.items():
        update_8x1 = weights_8x1[name] - before
        update_2x4 = weights_2x4[name] - before
        assert torch.allclose(update_8x1, update_2x4, atol=1e-6, rtol=1e-4), name
    assert any((weights_8x1[name] - before).abs().max() > 1e-4 for name, before in initial.items())
