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

"""``report_to: tensorboard`` under ``stage: cotraft``: the loss parts and judge metrics reach the event files."""

import pytest

from tests.train.test_train_cli import read_trainer_log, train_smoke_recipe

pytestmark = pytest.mark.slow


def read_scalars(output_dir) -> dict[str, dict[int, float]]:
    """tag -> {step: value} over every TensorBoard event file the run wrote (under ``output_dir/runs``)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    event_files = sorted(output_dir.glob("runs/**/events.out.tfevents.*"))
    assert event_files, f"no TensorBoard event file under {output_dir / 'runs'}"
    scalars: dict[str, dict[int, float]] = {}
    for event_file in event_files:
        accumulator = EventAccumulator(str(event_file))
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            scalars.setdefault(tag, {}).update({event.step: event.value for event in accumulator.Scalars(tag)})
    return scalars


def test_tensorboard_event_files_hold_the_loss_parts_and_eval_metrics(tiny_model_dirs, tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install -e '.[dev]')")
    _, output_dir = train_smoke_recipe(
        tiny_model_dirs,
        tmp_path,
        report_to="tensorboard",
        max_steps="2",
        do_eval="true",
        val_size="4",
        eval_strategy="steps",
        eval_steps="2",
        per_device_eval_batch_size="2",
    )
    scalars = read_scalars(output_dir)
    # The Trainer's TensorBoard callback files train logs under train/<key>, evaluation under eval/<key>.
    for tag in ("train/loss", "train/ce_loss", "train/raft_loss", "eval/rmse", "eval/pearson", "eval/raft_loss"):
        assert tag in scalars, f"{tag} missing; tags: {sorted(scalars)}"

    # The values are the ones the run logged (trainer_log.jsonl), step by step.
    logged = read_trainer_log(output_dir)
    train_steps = {entry["current_steps"]: entry for entry in logged if "ce_loss" in entry}
    assert sorted(scalars["train/ce_loss"]) == sorted(train_steps) == [1, 2]
    for step, entry in train_steps.items():
        assert scalars["train/ce_loss"][step] == pytest.approx(entry["ce_loss"], rel=1e-5)
        assert scalars["train/raft_loss"][step] == pytest.approx(entry["raft_loss"], rel=1e-5)
    eval_entry = next(entry for entry in logged if "eval_rmse" in entry)
    assert scalars["eval/rmse"][2] == pytest.approx(eval_entry["eval_rmse"], rel=1e-5)
    assert -1.0 <= scalars["eval/pearson"][2] <= 1.0
