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

"""Intervals in ``tract eval``'s outputs and ``tract report compare`` on two real evaluations (tiny model)."""

import json

import pytest
import yaml

from llamafactory_tract.cli import main
from tests.helpers.inference import tiny_model_dir

ROWS = 12  # three questions of four responses, as in the Prometheus files


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two evaluations of the same rows that differ by their sampling seed, and one on fewer rows."""
    root = tmp_path_factory.mktemp("compare")
    bench = root / "mt.json"
    records = [
        {"idx": str(80 + i // 4), "instruction": f"Judge answer {i}: {i} apples.", "gpt4_score": [1 + i % 5, 3, 4]}
        for i in range(ROWS)
    ]
    bench.write_text(json.dumps(records))
    config = root / "eval.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model_name_or_path": str(tiny_model_dir(root, "chatml")),
                "template": "chatml",
                "infer_dtype": "float32",
                "predictor": "cot_rail",
                "max_new_tokens": 4,
                "batch_size": 12,
                "benchmarks": {"mt_bench": {"path": str(bench)}},
            }
        )
    )
    for name, overrides in (
        ("a", ["seed=1"]),
        ("b", ["seed=2"]),
        ("fewer", ["seed=1", "benchmarks.mt_bench.limit=8"]),
    ):
        assert main(["eval", str(config), f"output_dir={root / name}", *overrides]) == 0
    return root


def test_eval_reports_intervals_over_questions(runs, capsys):
    metrics = json.loads((runs / "a" / "metrics.json").read_text())
    assert metrics["interval_method"] == "95% percentile bootstrap over questions, 2000 resamples, seed 0"
    assert metrics["benchmark_rows"]["mt_bench"]["questions"] == 3
    assert len(metrics["benchmark_rows"]["mt_bench"]["rows"]) == ROWS
    low, high = metrics["intervals"]["mt_bench"]["rmse"]
    assert low <= metrics["benchmarks"]["mt_bench"]["rmse"] <= high
    assert metrics["intervals"]["average"] == metrics["intervals"]["mt_bench"]  # one benchmark
    header, *rows = (runs / "a" / "metrics.csv").read_text().split("\n")[:3]
    assert "rmse_low" in header.split(",") and "\r" not in header
    # The printed table carries an interval row under the run.
    main(["eval", str(runs / "eval.yaml"), f"output_dir={runs / 'a'}", "seed=1"])
    assert "  95% interval" in capsys.readouterr().out


def test_compare_gives_the_paired_difference_of_the_metrics(runs, capsys, tmp_path):
    output = tmp_path / "compare"
    assert main(["report", "compare", str(runs / "a"), str(runs / "b"), "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    assert "A - B" in printed and "MT Bench" in printed and "Rows (the same in both runs): mt_bench: 12" in printed
    metrics_a, metrics_b = (json.loads((runs / name / "metrics.json").read_text())["benchmarks"] for name in "ab")
    rmse = json.loads(output.with_suffix(".json").read_text())["differences"]["mt_bench"]["rmse"]
    expected = metrics_a["mt_bench"]["rmse"] - metrics_b["mt_bench"]["rmse"]
    assert rmse["difference"] == pytest.approx(expected) and rmse["low"] <= expected <= rmse["high"]

    # A run against itself: every difference is exactly 0 and nothing is resolved.
    assert main(["report", "compare", str(runs / "a"), str(runs / "a"), "--output", str(output)]) == 0
    same = json.loads(output.with_suffix(".json").read_text())["differences"]["mt_bench"]
    assert all(entry["difference"] in (0, None) for entry in same.values())
    assert {entry["verdict"] for entry in same.values()} == {"not resolved"}


def test_compare_refuses_runs_on_different_rows_and_old_metrics(runs, capsys, tmp_path):
    assert main(["report", "compare", str(runs / "a"), str(runs / "fewer"), "--output", str(tmp_path / "c")]) == 2
    error = capsys.readouterr().err
    assert "mt_bench: the runs scored different rows or labels (4 only in" in error and "Traceback" not in error
    old = tmp_path / "old"
    old.mkdir()
    metrics = json.loads((runs / "b" / "metrics.json").read_text())
    del metrics["benchmark_rows"]
    (old / "metrics.json").write_text(json.dumps(metrics))
    assert main(["report", "compare", str(runs / "a"), str(old), "--output", str(tmp_path / "c")]) == 2
    assert "run the same `tract eval` again" in capsys.readouterr().err
    assert (
        main(["report", "compare", str(runs / "a"), str(tmp_path / "nothing"), "--output", str(tmp_path / "c")]) == 2
    )
    assert "has no metrics.json" in capsys.readouterr().err
