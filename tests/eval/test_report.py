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

"""``tract report curve`` on run folders laid out as the pipeline leaves them (metrics.json + recorded YAMLs)."""

import json

import pytest
import yaml

from llamafactory_tract.cli import main
from llamafactory_tract.eval.metrics import average_metrics, score_metrics


def finished_eval(run_dir, predictor, predictions, truth, eval_settings, stage2=None):
    """A run folder as `tract pipeline` writes it: evaluation/metrics.json, evaluation.yaml, stage2.yaml."""
    eval_dir = run_dir / "evaluation"
    eval_dir.mkdir(parents=True)
    per_benchmark = {"mt_bench": score_metrics(predictions, truth)}
    metrics = {
        "run_name": run_dir.name,
        "predictor": predictor,
        "config_hash": "x",
        "benchmarks": per_benchmark,
        "average": average_metrics(per_benchmark),
        "cot_closed_by": {"mt_bench": {"delimiter": 4}},
    }
    (eval_dir / "metrics.json").write_text(json.dumps(metrics))
    (run_dir / "evaluation.yaml").write_text(yaml.safe_dump({"predictor": predictor, **eval_settings}))
    if stage2 is not None:
        (run_dir / "stage2.yaml").write_text(yaml.safe_dump({"stage": "cotraft", **stage2}))
    return eval_dir


TRUTH = [1.0, 2.0, 3.0, 4.0]


def test_figure3_curve_groups_by_predictor_and_averages_seeds(tmp_path, capsys):
    runs = [
        finished_eval(tmp_path / "tract", "cot_rail", [1.2, 2.1, 2.9, 4.2], TRUTH, {"n_cot": 1}),
        finished_eval(tmp_path / "tract_ncot_2_seed1", "cot_rail", [1, 2, 3, 4], TRUTH, {"n_cot": 2}),
        finished_eval(tmp_path / "tract_ncot_2_seed2", "cot_rail", [2, 1, 3, 4], TRUTH, {"n_cot": 2}),
        finished_eval(tmp_path / "b2", "cot_decode", [4, 3, 2, 1], TRUTH, {"n_cot": 1}),
    ]
    output = tmp_path / "report" / "figure3"
    assert main(["report", "curve", *map(str, runs), "--output", str(output)]) == 0
    table = output.with_suffix(".txt").read_text()
    assert table.strip() in capsys.readouterr().out
    lines = {tuple(line.split()[:2]): line.split()[2:] for line in table.splitlines()[2:]}
    assert set(lines) == {("cot_rail", "1"), ("cot_rail", "2"), ("cot_decode", "1")}
    pearson_seed2 = score_metrics([2, 1, 3, 4], TRUTH)["pearson"]
    mean, std, count = lines[("cot_rail", "2")]
    assert float(mean) == pytest.approx((1.0 + pearson_seed2) / 2, abs=1e-3) and count == "2"
    assert float(std) == pytest.approx((1.0 - pearson_seed2) / 2, abs=1e-3)
    assert float(lines[("cot_decode", "1")][0]) == pytest.approx(-1.0)
    assert output.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figure2_reads_lambda_from_the_recorded_stage_config(tmp_path):
    runs = [
        finished_eval(tmp_path / f"lambda_{value}", "cot_rail", preds, TRUTH, {"n_cot": 1}, {"raft_lambda": value})
        for value, preds in ((0.2, [1, 2, 4, 3]), (1.0, [1, 2, 3, 4]), (10.0, [2, 1, 4, 3]))
    ]
    output = tmp_path / "figure2"
    assert (
        main(["report", "curve", *map(str, runs), "--x", "raft_lambda", "--metric", "rmse", "--output", str(output)])
        == 0
    )
    rows = [line.split() for line in output.with_suffix(".txt").read_text().splitlines()[2:]]
    assert [(row[1], float(row[2])) for row in rows] == [
        ("0.2", pytest.approx(0.7071, abs=1e-3)),
        ("1", 0.0),
        ("10", 1.0),
    ]


def test_unfinished_runs_and_missing_settings_are_named(tmp_path, capsys):
    run = finished_eval(tmp_path / "tract", "cot_rail", [1, 2, 3, 4], TRUTH, {"n_cot": 1})
    assert main(["report", "curve", str(run), "--x", "raft_lambda", "--output", str(tmp_path / "o")]) == 2
    assert "sets `raft_lambda`" in capsys.readouterr().err
    assert main(["report", "curve", str(tmp_path / "nothing"), "--output", str(tmp_path / "o")]) == 2
    assert "has no metrics.json" in capsys.readouterr().err
