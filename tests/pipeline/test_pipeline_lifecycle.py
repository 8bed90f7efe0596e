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

"""One pipeline per folder, a training child that dies with its pipeline, and resume only under the same config."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import yaml

from llamafactory_tract.pipeline.config import PipelineConfigError, load_pipeline_config
from llamafactory_tract.pipeline.lock import PipelineLockedError, RunLock, lock_path
from llamafactory_tract.pipeline.runner import checkpoints, run_pipeline
from tests.helpers.judge_data import write_judge_dataset
from tests.helpers.paths import SMOKE_RECIPE as SMOKE_RECIPE_PATH

SMOKE_RECIPE = str(SMOKE_RECIPE_PATH)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.slow
def test_one_pipeline_per_folder_its_training_dies_with_it_and_resumes_only_unchanged(tiny_model_dirs, tmp_path):
    model_dir, _ = tiny_model_dirs["tiktoken"]
    config_path = tmp_path / "stage1_only.yaml"
    train = {
        "dataset_dir": str(write_judge_dataset(tmp_path / "data", rows=8)),
        "max_steps": 16,
        "save_strategy": "steps",
        "save_steps": 2,
        "learning_rate": 0.05,
        "disable_shuffling": True,
    }
    config_path.write_text(
        yaml.safe_dump(
            {
                "run_dir": str(tmp_path / "run"),
                "model_name_or_path": str(model_dir),
                "template": "llama3",
                "stage1": {"recipe": SMOKE_RECIPE, "overrides": train},
            }
        )
    )
    stage1_dir, run_lock = tmp_path / "run" / "stage1", lock_path(tmp_path / "run")
    pipeline = subprocess.Popen([sys.executable, "-m", "llamafactory_tract.cli", "pipeline", str(config_path)])
    _wait_for(lambda: bool(stage1_dir.is_dir() and checkpoints(stage1_dir)), 300, "the first checkpoint")
    child = json.loads(run_lock.read_text())["child_pgid"]
    assert child and _group_alive(child)

    # A second pipeline on the same folder stops at once, naming the one that holds it.
    with pytest.raises(PipelineLockedError, match=rf"in use by another tract pipeline \(pid {pipeline.pid} "):
        run_pipeline(load_pipeline_config([config_path]))

    # SIGTERM to the pipeline stops its training child's whole process group and releases the locks.
    pipeline.send_signal(signal.SIGTERM)
    assert pipeline.wait(timeout=120) == 130
    _wait_for(lambda: not _group_alive(child), 30, "the training process group to end")
    assert not run_lock.exists() and not lock_path(stage1_dir).exists()
    assert not (stage1_dir / "train_results.json").exists(), "training finished before it could be interrupted"
    interrupted_at = checkpoints(stage1_dir)[-1]

    # Another learning rate never resumes that checkpoint: the error names the key and the two ways out,
    # and the recorded config stays the one the checkpoint came from.
    recorded = (tmp_path / "run" / "stage1.yaml").read_text()
    with pytest.raises(PipelineConfigError) as refused:
        run_pipeline(load_pipeline_config([config_path], ["stage1.overrides.learning_rate=0.5"]))
    message = str(refused.value)
    assert (
        "learning_rate: 0.05 -> 0.5" in message
        and f"restore those values to resume from {interrupted_at.name}" in message
    )
    assert f"or remove {stage1_dir} to train from scratch" in message
    assert (tmp_path / "run" / "stage1.yaml").read_text() == recorded and checkpoints(stage1_dir)[-1] == interrupted_at

    # The same configuration resumes from the checkpoint: the steps before it are logged once, not retrained.
    run_pipeline(load_pipeline_config([config_path]))
    steps = [
        json.loads(line).get("current_steps") for line in (stage1_dir / "trainer_log.jsonl").read_text().splitlines()
    ]
    resumed_from = int(interrupted_at.name.split("-")[-1])
    assert all(steps.count(step) == 1 for step in range(1, resumed_from + 1)) and max(steps) == 16
    assert (stage1_dir / "train_results.json").is_file()


def test_a_live_lock_stops_a_second_pipeline_and_a_dead_ones_lock_is_taken_over(tmp_path):
    folder = tmp_path / "run"
    with RunLock([folder]):
        with pytest.raises(
            PipelineLockedError, match=rf"{folder} is in use by another tract pipeline \(pid {os.getpid()}"
        ):
            RunLock([folder]).__enter__()
    assert not lock_path(folder).exists()

    dead = subprocess.Popen(["true"])  # a pid that no longer runs
    dead.wait()
    lock_path(folder).write_text(json.dumps({"pid": dead.pid, "pid_started": 0.0, "host": socket.gethostname()}))
    with RunLock([folder]) as lock:
        assert json.loads(lock_path(folder).read_text())["pid"] == os.getpid() and lock.held
    # A recycled pid (alive, but started at another time than the recorded owner) is not the owner either.
    lock_path(folder).write_text(json.dumps({"pid": os.getpid(), "pid_started": 1.0, "host": socket.gethostname()}))
    with RunLock([folder]):
        pass
    # A lock from another host cannot be checked from here: it is never taken over silently.
    lock_path(folder).write_text(json.dumps({"pid": 1, "pid_started": 0.0, "host": "another-node"}))
    with pytest.raises(PipelineLockedError, match="another-node"):
        RunLock([folder]).__enter__()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's prctl")
def test_a_step_child_stops_when_its_pipeline_is_killed_without_cleanup():
    code = (
        "from llamafactory_tract.pipeline.child import run_child\n"
        "run_child('step', ['sleep', '120'], on_start=lambda pid: print(f'child={pid}', flush=True))\n"
    )
    pipeline = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    child = next(int(line[6:]) for line in pipeline.stdout if line.startswith("child="))
    assert _group_alive(child)
    pipeline.kill()  # SIGKILL: no handler runs, only the kernel's parent-death signal reaches the child
    pipeline.wait(timeout=30)
    _wait_for(lambda: not _group_alive(child), 30, "the orphaned step to stop")
