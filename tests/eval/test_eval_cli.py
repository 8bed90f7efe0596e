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

"""``tract eval`` end to end: config parsing, the table and files, resuming, and real rows with SmolLM2."""

import json

import pytest
import yaml

from llamafactory_tract.cli import main
from llamafactory_tract.eval.config import EvalConfigError, load_eval_config
from tests.helpers.inference import require_shared_file, require_smollm2, tiny_model_dir


def _write_config(path, **values):
    path.write_text(yaml.safe_dump(values))
    return str(path)


def _benchmark_file(path, count):
    rows = [{"instruction": f"Judge answer {i}: 12 apples.", "gpt4_score": [1 + i % 5, 2, 3]} for i in range(count)]
    path.write_text(json.dumps(rows))
    return str(path)


def test_unknown_and_mistyped_keys_are_named(tmp_path):
    base = {"model_name_or_path": "m", "template": "mistral", "benchmarks": {"mt_bench": {"limit": 2}}}
    with pytest.raises(EvalConfigError, match=r"a\.yaml: unknown key `temprature` \(did you mean `temperature`\?\)"):
        load_eval_config(_write_config(tmp_path / "a.yaml", **base, temprature=0.7))
    with pytest.raises(EvalConfigError, match=r"b\.yaml .*unknown key `benchmarks\.mt_bench\.limt`"):
        load_eval_config(_write_config(tmp_path / "b.yaml", **base), ["benchmarks.mt_bench.limt=3"])
    with pytest.raises(EvalConfigError, match=r"`n_cot`: Input should be a valid integer.*\(got 'two'\)"):
        load_eval_config(_write_config(tmp_path / "c.yaml", **base), ["n_cot=two"])
    with pytest.raises(EvalConfigError, match=r"`predictor`: Input should be 'cot_rail', .*\(got 'cot'\)"):
        load_eval_config(_write_config(tmp_path / "d.yaml", **base, predictor="cot"))
    with pytest.raises(EvalConfigError, match=r"missing required key `template`"):
        load_eval_config(_write_config(tmp_path / "f.yaml", model_name_or_path="m"))
    with pytest.raises(EvalConfigError, match=r"not of the form key=value"):
        load_eval_config(tmp_path / "a.yaml", ["n_cot"])
    config = load_eval_config(_write_config(tmp_path / "e.yaml", **base), ["top_p=1", "benchmarks.mt_bench.limit=5"])
    assert config.top_p == 1.0 and config.benchmarks["mt_bench"].limit == 5
    assert config.prediction_hash() != load_eval_config(tmp_path / "e.yaml", ["seed=7"]).prediction_hash()
    # Sampling is per row, so the batch size never changes a prediction and is not part of its key.
    assert (
        config.prediction_hash()
        == load_eval_config(tmp_path / "e.yaml", ["top_p=1", "batch_size=3"]).prediction_hash()
    )
    assert load_eval_config(tmp_path / "e.yaml", ["score_values=1,2,3"]).score_values == ["1", "2", "3"]


def test_prediction_key_follows_the_adapter_content_not_its_path(tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(b"weights of the first training")
    config = load_eval_config(
        _write_config(
            tmp_path / "a.yaml", model_name_or_path="m", template="mistral", adapter_name_or_path=str(adapter)
        )
    )
    before = config.prediction_hash()
    (adapter / "adapter_model.safetensors").write_bytes(b"weights retrained in place")
    assert config.prediction_hash() != before


def test_shipped_configs_parse():
    for name in ("eval_tract.yaml", "eval_smollm2_cpu.yaml", "eval_smollm2_rail_cpu.yaml"):
        config = load_eval_config(f"yaml_configs/{name}")
        assert config.benchmarks and config.score_format.delimiter == "So the overall score is"


def test_eval_writes_table_and_files_and_resumes(tmp_path, capsys):
    model = tiny_model_dir(tmp_path, "chatml")
    config = _write_config(
        tmp_path / "eval.yaml",
        model_name_or_path=str(model),
        template="chatml",
        infer_dtype="float32",
        predictor="cot_rail",
        max_new_tokens=4,
        n_cot=2,
        batch_size=4,
        renormalize_scores=True,
        output_dir=str(tmp_path / "out"),
        benchmarks={
            "vicuna_bench": {"path": _benchmark_file(tmp_path / "v.json", 5)},
            "mt_bench": {"path": _benchmark_file(tmp_path / "m.json", 4)},
        },
    )
    assert main(["eval", config, "benchmarks.vicuna_bench.limit=3"]) == 0
    printed = capsys.readouterr().out
    assert "Vic. Bench" in printed and "MT Bench" in printed and "Average" in printed
    # A random model never writes the delimiter: all 3 rows x 2 CoTs were closed by force (EOS or length).
    assert "vicuna_bench: 6 of 6 CoTs closed without the delimiter (" in printed
    assert "Scores: expected score renormalised over the score tokens (renormalize_scores: true)." in printed
    predictions = (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()
    assert len(predictions) == 7
    record = json.loads(predictions[0])
    assert len(record["cots"]) == 2 and set(record["score_probs"][0]) == {"1", "2", "3", "4", "5"}
    assert record["score"] == pytest.approx(sum(record["cot_scores"]) / 2)
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["benchmarks"]["vicuna_bench"]["n"] == 3 and metrics["benchmarks"]["mt_bench"]["n"] == 4
    assert metrics["score_definition"].startswith("Scores: expected score renormalised") and metrics["pairwise"] == {}
    assert (tmp_path / "out" / "metrics.csv").read_text().count("\n") == 4

    # Resume: an interrupted line is skipped, only the new rows are predicted.
    with (tmp_path / "out" / "predictions.jsonl").open("a") as handle:
        handle.write('{"benchmark": "vicuna_bench", "row": 4, "sco')
    assert main(["eval", config]) == 0
    records = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()[8:]]
    assert sorted((r["benchmark"], r["row"]) for r in records) == [("vicuna_bench", 3), ("vicuna_bench", 4)]
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["benchmarks"]["vicuna_bench"]["n"] == 5

    # Corrected labels: the two edited rows are predicted again (the same CoTs: sampling depends only on the
    # seed and the row) and the metrics use the new labels; the other rows are reused.
    rows = json.loads((tmp_path / "m.json").read_text())
    rows[0]["gpt4_score"], rows[1]["gpt4_score"] = [5, 5, 5], [1, 1, 2]
    (tmp_path / "m.json").write_text(json.dumps(rows))
    before = json.loads((tmp_path / "out" / "metrics.json").read_text())["benchmarks"]["mt_bench"]
    assert main(["eval", config]) == 0
    lines = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()[8:]]
    redone = {record["row"]: record for record in lines[2:]}
    assert sorted(redone) == [0, 1] and all(record["benchmark"] == "mt_bench" for record in redone.values())
    assert (redone[0]["ground_truth"], redone[1]["ground_truth"]) == (5.0, pytest.approx(4 / 3))
    old = {r["row"]: r for r in map(json.loads, predictions) if r["benchmark"] == "mt_bench"}
    assert [redone[row]["cots"] for row in (0, 1)] == [old[row]["cots"] for row in (0, 1)]
    after = json.loads((tmp_path / "out" / "metrics.json").read_text())["benchmarks"]["mt_bench"]
    assert after["n"] == 4 and after["rmse"] != pytest.approx(before["rmse"])

    # A changed setting predicts everything again instead of reusing stale predictions.
    assert main(["eval", config, "seed=5", "benchmarks.mt_bench.limit=1", "benchmarks.vicuna_bench.limit=1"]) == 0
    assert len((tmp_path / "out" / "predictions.jsonl").read_text().splitlines()) == 14


def test_malformed_benchmark_fails_before_loading_the_model(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"instruction": "x", "gpt4_score": [4]}, {"instruction": "y", "gpt4_score": []}]))
    config = _write_config(
        tmp_path / "eval.yaml",
        model_name_or_path="/nonexistent",
        template="mistral",
        benchmarks={"mt_bench": {"path": str(bad)}},
    )
    assert main(["eval", config]) == 2
    assert "row 1: `gpt4_score` must be a score or a non-empty list of scores, got []" in capsys.readouterr().err


def test_tract_eval_on_real_rows_with_smollm2(tmp_path, capsys):
    """CoT-RAIL zero-shot with SmolLM2 on two real rows of each local benchmark."""
    model = require_smollm2()
    benchmarks = {
        "vicuna_bench": {"path": str(require_shared_file("vicuna_eval.json")), "limit": 2},
        "mt_bench": {"path": str(require_shared_file("mt_bench_eval.json")), "limit": 2},
    }
    config = _write_config(
        tmp_path / "eval.yaml",
        model_name_or_path=str(model),
        template="smollm2",
        infer_dtype="float32",
        max_new_tokens=4,
        batch_size=4,
        run_name="SmolLM2 CoT-RAIL",
        output_dir=str(tmp_path / "out"),
        benchmarks=benchmarks,
    )
    assert main(["eval", config]) == 0
    printed = capsys.readouterr().out
    assert "SmolLM2 CoT-RAIL" in printed and "Vic. Bench" in printed
    records = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == 4 and all(float(3 * r["ground_truth"]).is_integer() for r in records)
    assert all(0.0 <= r["score"] <= 5.0 and len(r["cots"][0]) > 0 for r in records)
