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

"""The prepared GPU check on CPU: ``prepare`` fits one device call, ``run`` installs from the wheels and runs.

Everything short of CUDA: the real ``scripts/gpu_check.sh`` with this machine's Python standing in for the
GPU image's (the wheels downloaded for it), every part's code path with ``--tiny --device cpu``.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from benchmarks.gpu_check.geometry import training_flops_per_token
from benchmarks.gpu_check.models import LLAMA3_8B
from benchmarks.gpu_check.prepare import CALL_LIMIT_BYTES, download_wheels
from tests.helpers.paths import REPO_ROOT

pytestmark = pytest.mark.slow
CORRECTNESS_CHECKS = {
    f"{group}_{precision}.{metric}"
    for precision in ("fp32", "bf16")
    for group, metrics in (
        ("cotraft_loss", ("loss", "expected_scores", "gradients")),
        ("chunked_loss", ("loss", "expected_scores", "gradients")),
        ("judge_probs", ("model_dtype", "log_probs")),
    )
    for metric in metrics
}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("gpu_check")
    completed = subprocess.run(
        ["bash", "scripts/gpu_check.sh", "prepare", "--dir", str(folder)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return folder, completed.stdout


def test_prepare_fits_one_device_call_and_prints_its_command(prepared: tuple[Path, str]) -> None:
    folder, stdout = prepared
    record = json.loads((folder / "prepared.json").read_text())
    assert record["python_version"] == "3.12"  # the GPU machine's
    assert record["carried_bytes"] + record["tree_bytes"] < CALL_LIMIT_BYTES
    assert f"bash scripts/gpu_check.sh run --dir {folder}" in stdout.splitlines()[-1]
    wheels = {path.name.split("-")[0].lower() for path in (folder / "wheels").glob("*.whl")}
    assert {"llamafactory", "transformers", "deepspeed", "liger_kernel", "pydantic_core"} <= wheels
    for stage in ("sft", "cotraft"):  # the geometry part's rows, tokenised per stage
        assert (folder / "assets" / "tokenized" / stage / "dataset_dict.json").is_file()


def test_cpu_dry_run_installs_the_wheels_and_runs_every_part(prepared: tuple[Path, str], tmp_path: Path) -> None:
    folder, _ = prepared
    dry = tmp_path / "dry"
    shutil.copytree(folder / "assets", dry / "assets")
    python_version = f"{sys.version_info.major}.{sys.version_info.minor}"
    download_wheels(dry / "wheels", python_version)  # this machine's Python plays the GPU image's
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(out)}
    completed = subprocess.run(
        ["bash", "scripts/gpu_check.sh", "run", "--dir", str(dry), "--tiny", "--device", "cpu"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    report = json.loads((out / "gpu_check.json").read_text())
    assert sorted(path.name for path in out.iterdir()) == ["gpu_check.json", "gpu_check.log"]
    statuses = {part["part"]: part["status"] for part in report["parts"]}
    assert statuses == {
        "correctness": "passed",
        "training_cli": "passed",
        "geometry": "passed",
        "deepspeed_zero": "skipped",
    }, report["table"]
    assert completed.returncode == 0, completed.stdout[-3000:]
    parts = {part["part"]: part for part in report["parts"]}
    correctness = parts["correctness"]
    assert {check["name"] for check in correctness["checks"]} == CORRECTNESS_CHECKS
    assert correctness["figures"]["tf32"] is False
    # The bf16 runs really ran in bf16: they differ from the float32 reference, within tolerance.
    assert 0 < correctness["figures"]["cotraft_loss_bf16"]["gradient_rel_norm_error"]
    assert 0 < correctness["figures"]["judge_probs_bf16"]["log_prob_max_abs_diff"]
    deepspeed = parts["deepspeed_zero"]
    assert deepspeed["checks"][0]["name"] == "deepspeed wheel imports" and deepspeed["checks"][0]["passed"]
    # LLaMA-Factory and transformers came from the carried wheels, torch from the machine.
    paths = report["environment"]["paths"]
    assert not paths["llamafactory"].startswith(sys.prefix) and not paths["transformers"].startswith(sys.prefix)
    assert paths["torch"].startswith(sys.prefix)
    geometry = parts["geometry"]
    assert geometry["figures"]["llama3-8b"]["cotraft_chunked"]["step_over_sft"] > 0


def test_training_flops_count_every_linear_weight_of_llama3_8b() -> None:
    """The FLOP count's weights are the model's linear weights (embeddings and norms aside)."""
    shape = {key: value for key, value in LLAMA3_8B.items() if key != "model_type"}
    with torch.device("meta"):
        model = LlamaForCausalLM(LlamaConfig(**shape))
    linear_weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert linear_weights == 7_504_658_432  # 32 layers' attention and MLP plus the untied 128,256-row head
    attention = 3 * 2 * shape["num_hidden_layers"] * 3000 * shape["hidden_size"]
    assert training_flops_per_token(shape, 3000) == 2 * 2 * linear_weights + attention
