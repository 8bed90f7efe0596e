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

"""``stage: cotraft`` runs inside LLaMA-Factory's own training function and data loader.

What LLaMA-Factory gives every stage (here: its torch and module profilers) reaches ours, and
streaming datasets get the same row validation as map-style ones, through the CLI as a user runs it.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from llamafactory_tract.data.validation import InvalidTrainingData
from tests.helpers.judge_data import sgd_full_finetune_config, write_judge_dataset
from tests.helpers.paths import REPO_ROOT

VENV_BIN = Path(sys.executable).parent
SMOKE_RECIPE = REPO_ROOT / "yaml_configs" / "cpu" / "cotraft_smoke.yaml"
INVALID_ROWS = [
    {"instruction": "Grade it.", "output": "No score here."},
    {"instruction": "Grade it.", "output": "Out of range. [RESULT] 6"},
    {"instruction": "Grade it.", "output": "So the overall score is 2, no: So the overall score is 4"},
]
# LLaMA-Factory 0.9.5 streams a local file as `num_shards=dataloader_num_workers` shards: 0 shards yield no rows.
STREAMING = {"streaming": True, "dataloader_num_workers": 1, "max_steps": 3}

pytestmark = pytest.mark.slow


def judge_data_with_invalid_rows(directory: Path) -> tuple[Path, int]:
    """12 valid judge rows followed by the invalid ones; returns (dataset_dir, number of valid rows)."""
    data_dir = write_judge_dataset(directory, rows=12)
    rows = json.loads((data_dir / "judge.json").read_text())
    (data_dir / "judge.json").write_text(json.dumps(rows + INVALID_ROWS))
    return data_dir, len(rows)


def test_profilers_and_streaming_validation_work_under_cotraft(tiny_model_dirs, tmp_path):
    model_dir, _ = tiny_model_dirs["tiktoken"]
    data_dir, valid_rows = judge_data_with_invalid_rows(tmp_path / "data")
    output_dir = tmp_path / "out"
    overrides = {
        "model_name_or_path": model_dir,
        "dataset_dir": data_dir,
        "output_dir": output_dir,
        "gradient_accumulation_steps": 1,
        "enable_torch_profiler": True,
        "profile_modules": "'*.layers.0.self_attn'",  # quoted: a leading * is a YAML alias
        **STREAMING,
    }
    result = subprocess.run(
        [str(VENV_BIN / "llamafactory-cli"), "train", str(SMOKE_RECIPE), *(f"{k}={v}" for k, v in overrides.items())],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"},
        timeout=600,
        cwd=REPO_ROOT,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]

    # LLaMA-Factory's TorchProfilerCallback wrote a trace; its ModuleProfilerCallback was installed (on CPU it
    # reports that it has no accelerator events to time, on a GPU it names the hooked modules).
    assert list((output_dir / "profiler" / "rank_0").glob("*.json")), log[-4000:]
    assert "ModuleProfiler:" in log
    # Our stage, not sft: the CoT-RAFT loss parts are logged.
    entries = [json.loads(line) for line in (output_dir / "trainer_log.jsonl").read_text().splitlines()]
    assert [entry["current_steps"] for entry in entries if "ce_loss" in entry] == [1, 2, 3]
    # Every invalid row the stream reached was dropped with its dataset and row number, no valid row was.
    dropped = set(re.findall(r"Dropped invalid streamed training row, dataset 'judge' row (\d+): ", log))
    assert dropped == {str(row) for row in range(valid_rows, valid_rows + len(INVALID_ROWS))}


def test_strict_streaming_stops_training_at_the_first_invalid_row(tiny_model_dirs, tmp_path):
    from llamafactory.train.tuner import run_exp

    model_dir, _ = tiny_model_dirs["tiktoken"]
    data_dir, _ = judge_data_with_invalid_rows(tmp_path / "data")
    config = sgd_full_finetune_config(model_dir, data_dir, tmp_path / "out", **STREAMING, cotraft_strict_data=True)
    with pytest.raises(InvalidTrainingData, match=r"Invalid streamed training row, dataset 'judge' row 1[2-4]: "):
        run_exp({**config, "max_steps": 20, "per_device_train_batch_size": 4})
