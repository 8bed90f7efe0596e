"""The benchmark command end to end at a tiny size: every configuration runs and the JSON holds the ratios."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

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
