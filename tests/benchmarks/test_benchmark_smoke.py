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

"""The benchmark command end to end at a tiny size: every configuration runs and the JSON holds the ratios."""

import json
import subprocess
import sys

import pytest

from tests.helpers.paths import REPO_ROOT

pytestmark = pytest.mark.slow


def test_benchmark_runs_all_configurations_and_writes_json(tiny_model_dirs, tmp_path):
    model_dir, template = tiny_model_dirs["tiktoken"]
    command = [sys.executable, "-m", "benchmarks.run", "--out", str(tmp_path), "--tokenizer", str(model_dir)]
    command += ["--template", template, "--vocab-size", "1024", "--seq-len", "1024", "--hidden-size", "32"]
    command += ["--warmup", "1", "--steps", "2", "--preprocess-rows", "8", "--preprocess-repeats", "1"]
    command += ["--inference-prompts", "2", "--inference-new-tokens", "4", "--inference-repeats", "1"]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    (written,) = tmp_path.glob("benchmark_*.json")
    report = json.loads(written.read_text())
    assert report["table"] in result.stdout
    for name in ("sft", "cotraft", "cotraft_chunked"):
        stats = report["training"][name]
        assert len(stats["runs"][0]["step_times_s"]) == 3
        assert stats["median_step_s"] > 0 and stats["peak_rss_mib"] > stats["training_rss_increase_mib"] > 0
    assert set(report["ratios"]) >= {"cotraft/sft step time", "cotraft_chunked/sft step time"}
    assert report["preprocessing"]["rows"] == 8 and report["preprocessing"]["ratio_cotraft_over_supervised"] > 0
    inference = report["inference"]
    assert inference["forward_tokens"]["cot_rail"] > 0 and inference["ratio_time_cot_rail_over_decode"] > 0


def test_packing_benchmark_on_real_judge_rows_counts_the_same_judge_tokens_both_ways(smollm2_dir, tmp_path):
    """Toy model at a tiny width; the rows, tokenizer and batching are the real ones."""
    from tests.helpers.inference import require_shared_file

    data = require_shared_file("vicuna_eval.json")
    command = [sys.executable, "-m", "benchmarks.packing", "--data", str(data), "--out", str(tmp_path)]
    command += ["--rows", "12", "--batch-size", "2", "--hidden-size", "32", "--vocab-size", "49152", "--repeats", "1"]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    (written,) = tmp_path.glob("packing_*.json")
    report = json.loads(written.read_text())
    unpacked, packed = report["packing"]["unpacked"], report["packing"]["neat_packing"]
    assert report["table"] in result.stdout
    assert unpacked["steps"] == 6 and 1 < packed["steps"] < 6  # 12 rows: 6 batches of 2, fewer packed rows
    assert packed["real_tokens"] == unpacked["real_tokens"]  # the same judge rows, none cut (cutoff 3000)
    assert packed["fed_tokens"] % 3000 == 0  # LLaMA-Factory pads every packed row to cutoff_len
    assert unpacked["fed_tokens"] < 6 * 2 * 3000 and 0 < unpacked["padding_share"] < 1
    assert packed["real_tokens_per_cpu_s"] > 0 and unpacked["real_tokens_per_cpu_s"] > 0


def test_gpu_liger_script_stops_at_once_on_cpu_saying_why():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible: the script would run the benchmark")
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_liger"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    assert "benchmarks.gpu_liger needs a CUDA GPU" in result.stderr
