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

"""An evaluation killed mid-batch (a real process, SIGKILL) resumes to the predictions of an uninterrupted run.

Sampling is seeded per row and draw (run seed, benchmark row, CoT index), so neither the batch size nor
where the kill fell changes a CoT. Score probabilities are compared to 1e-6: a row that lands in a
batch of another shape is left-padded to another width and multiplied by kernels blocked for another
batch size, which moves float32 logits by a few ulps (measured here: 81 of 100 probabilities bit-identical, the
others within 7e-10); 1e-6 is far below any score difference that matters and far above that noise.
"""

import json
import signal
import subprocess
import sys
import time

import pytest
import yaml

from llamafactory_tract.cli import main
from llamafactory_tract.eval.config import load_eval_config
from llamafactory_tract.eval.evaluate import run_evaluation
from tests.helpers.inference import tiny_model_dir

ROWS = 10
ROWS_PER_BATCH = 2  # batch_size 4 with n_cot 2
pytestmark = pytest.mark.slow


def _benchmark(path):
    rows = [
        {
            "instruction": f"Judge answer {i}: " + "12 apples and 345 pears. " * (1 + i % 4),
            "gpt4_score": [1 + i % 5] * 3,
        }
        for i in range(ROWS)
    ]
    path.write_text(json.dumps(rows))
    return path


def _records(path):
    """The last readable record of every row (a line cut short is skipped, as the store does)."""
    records = {}
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        records[(record["benchmark"], record["row"])] = record
    return records


def test_sigkill_mid_batch_then_resume_equals_an_uninterrupted_run(tmp_path):
    config = tmp_path / "eval.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model_name_or_path": str(tiny_model_dir(tmp_path, "llama3")),
                "template": "llama3",
                "infer_dtype": "float32",
                "predictor": "cot_rail",
                "max_new_tokens": 48,
                "n_cot": 2,
                "batch_size": 2 * ROWS_PER_BATCH,
                "output_dir": str(tmp_path / "killed"),
                "benchmarks": {"mt_bench": {"path": str(_benchmark(tmp_path / "bench.json"))}},
            }
        )
    )
    reference = run_evaluation(load_eval_config(config, ["batch_size=6", f"output_dir={tmp_path / 'reference'}"]))

    predictions = tmp_path / "killed" / "predictions.jsonl"
    process = subprocess.Popen([sys.executable, "-m", "llamafactory_tract.cli", "eval", str(config)])
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline:
        if predictions.is_file() and len(predictions.read_text().splitlines()) >= ROWS_PER_BATCH:
            process.send_signal(signal.SIGKILL)  # the next batch is being generated: killed mid-batch
            break
        time.sleep(0.01)
    assert process.wait(timeout=60) == -signal.SIGKILL, "the evaluation finished before it could be killed"
    written = predictions.read_text().splitlines()
    assert ROWS_PER_BATCH <= len(written) < ROWS and len(written) % ROWS_PER_BATCH == 0
    # The last line cut in half, as a kill during its write would leave it.
    predictions.write_text("\n".join(written[:-1] + [written[-1][: len(written[-1]) // 2]]))

    assert main(["eval", str(config), "batch_size=2"]) == 0  # resumed, with yet another batch size

    resumed, uninterrupted = _records(predictions), _records(tmp_path / "reference" / "predictions.jsonl")
    assert sorted(resumed) == sorted(uninterrupted) and len(resumed) == ROWS
    for key, record in uninterrupted.items():
        assert resumed[key]["cots"] == record["cots"], key
        assert resumed[key]["closed_by"] == record["closed_by"] and resumed[key]["input_hash"] == record["input_hash"]
        for got, expected in zip(resumed[key]["score_probs"], record["score_probs"], strict=True):
            assert got == pytest.approx(expected, abs=1e-6, rel=0), key
    metrics = json.loads((tmp_path / "killed" / "metrics.json").read_text())["benchmarks"]["mt_bench"]
    assert metrics["rmse"] == pytest.approx(reference.per_benchmark["mt_bench"]["rmse"], abs=1e-6)
