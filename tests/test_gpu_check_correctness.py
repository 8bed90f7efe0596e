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

"""Part a of the device check, dry-run on the CPU: every code path the GPU run takes, at tiny shapes."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
TOKENIZER_FILES = ("tokenizer*", "special_tokens_map.json", "chat_template*")
EXPECTED_CHECKS = {
    f"{group}_{precision}.{metric}"
    for precision in ("fp32", "bf16")
    for group, metrics in (
        ("cotraft_loss", ("loss", "expected_scores", "gradients")),
        ("chunked_loss", ("loss", "expected_scores", "gradients")),
        ("judge_probs", ("model_dtype", "log_probs")),
    )
    for metric in metrics
}


@pytest.fixture
def assets(smollm2_dir: Path, tmp_path: Path) -> Path:
    """The folder ``gpu_check.sh prepare`` writes: SmolLM2's tokenizer files only (no weights)."""
    tokenizer_dir = tmp_path / "assets" / "tokenizer"
    tokenizer_dir.mkdir(parents=True)
    for pattern in TOKENIZER_FILES:
        for path in smollm2_dir.glob(pattern):
            shutil.copy(path, tokenizer_dir)
    return tokenizer_dir.parent


def run_part(device: str, assets: Path, out: Path) -> tuple[dict, subprocess.CompletedProcess]:
    command = [sys.executable, "-m", "benchmarks.gpu_check.correctness", "--device", device, "--tiny"]
    command += ["--assets", str(assets), "--out", str(out)]
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return json.loads(out.read_text()), completed


def test_cpu_dry_run_passes_every_check(assets, tmp_path):
    result, completed = run_part("cpu", assets, tmp_path / "correctness.json")
    assert result["status"] == "passed", completed.stdout[-3000:]
    names = {check["name"] for check in result["checks"]}
    assert names == EXPECTED_CHECKS
    assert result["figures"]["tf32"] is False
    # The bf16 runs really ran in bf16: they differ from the fp32 reference, within tolerance.
    assert 0 < result["figures"]["cotraft_loss_bf16"]["gradient_rel_norm_error"]
    assert 0 < result["figures"]["judge_probs_bf16"]["log_prob_max_abs_diff"]
    assert "correctness on cpu: passed" in completed.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present: the part would run, not skip")
def test_cuda_without_a_device_is_skipped_with_a_reason(assets, tmp_path):
    result, _ = run_part("cuda", assets, tmp_path / "correctness.json")
    assert result["status"] == "skipped" and result["reason"] == "no CUDA device"
    assert result["checks"] == []
