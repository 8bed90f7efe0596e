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

"""``tract report table3`` end to end on a tiny random Llama: a LLaMA-Factory dataset and a D_self-style JSONL."""

import csv
import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from llamafactory_tract.cli import main
from llamafactory_tract.eval.config import build_eval_config
from llamafactory_tract.eval.table3 import load_table3_config
from llamafactory_tract.judge.backend import JudgePrompt, SamplingConfig
from llamafactory_tract.judge.loader import load_backend
from llamafactory_tract.judge.predictors import JudgePredictor, expected_score
from tests.helpers.judge_data import write_judge_dataset

# Renormalised scores spread a random model's near-uniform score probabilities over [1, 5], so that
# scoring the wrong CoT would move a score far beyond the tolerances below.
JUDGE = {
    "infer_dtype": "float32",
    "backend": "hf",
    "max_new_tokens": 5,
    "batch_size": 2,
    "seed": 7,
    "renormalize_scores": True,
}


def _random_lora(model_dir, directory):
    """A PEFT LoRA with random non-zero A and B, standing in for a trained stage-2 adapter."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir), config).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def setting(tiny_model_dirs, tmp_path_factory):
    """Stage 1: the base model on a LLaMA-Factory dataset (one row unusable); stage 2: base + adapter on a JSONL."""
    root = tmp_path_factory.mktemp("table3")
    model_dir, template = tiny_model_dirs["sentencepiece"]
    data_dir = write_judge_dataset(root / "data", rows=5)
    rows = json.loads((data_dir / "judge.json").read_text())
    rows[3]["output"] = "A response without any score."
    (data_dir / "judge.json").write_text(json.dumps(rows))
    d_self = root / "d_self.jsonl"
    d_self.write_text(
        "".join(
            json.dumps({"instruction": f"Grade answer {i}.", "output": f"Self CoT {i}. So the overall score is {s}"})
            + "\n"
            for i, s in enumerate([2, 5, 3])
        )
    )
    config = {
        "model_name_or_path": str(model_dir),
        "template": template,
        **JUDGE,
        "output_dir": str(root / "out"),
        "rows": {
            "stage1": {"dataset": "judge", "dataset_dir": str(data_dir), "train_cots": "p_a", "sampled_from": "p_s"},
            "stage2": {
                "path": str(d_self),
                "adapter_name_or_path": str(_random_lora(model_dir, root / "adapter")),
                "train_cots": "p_s",
                "sampled_from": "p_tract",
            },
        },
    }
    path = root / "table3.yaml"
    path.write_text(yaml.safe_dump(config))
    return {"config": path, "raw": config, "out": root / "out", "rows": rows, "d_self": d_self}


def _records(out, row):
    return [json.loads(line) for line in (out / row / "predictions.jsonl").read_text().splitlines()]


def _rmse(predicted, truth):
    return math.sqrt(sum((p - t) ** 2 for p, t in zip(predicted, truth, strict=True)) / len(truth))


def test_table3_runs_end_to_end_and_matches_the_judge(setting, capsys):
    assert main(["report", "table3", str(setting["config"])]) == 0
    out = setting["out"]
    printed = capsys.readouterr().out
    lines = {line["name"]: line for line in json.loads((out / "table3.json").read_text())}
    assert (lines["stage1"]["rows"], lines["stage1"]["skipped"]) == (4, 1)  # row 3 has no score
    assert (lines["stage2"]["rows"], lines["stage2"]["skipped"]) == (3, 0)
    for name, line in lines.items():
        records = _records(out, name)
        truth = [r["ground_truth"] for r in records]
        assert math.isfinite(line["rmse_train_cot"]) and math.isfinite(line["rmse_self_cot"])
        assert line["rmse_train_cot"] == pytest.approx(_rmse([r["train_cot_score"] for r in records], truth))
        assert line["rmse_self_cot"] == pytest.approx(_rmse([r["self_cot_score"] for r in records], truth))
        assert f"{line['rmse_train_cot']:.3f}" in printed and f"{line['rmse_self_cot']:.3f}" in printed
        low, high = line["intervals"]["rmse_train_cot"]  # rows resampled: bounds of the resampled RMSEs
        assert low <= line["rmse_train_cot"] <= high
    stage1 = sorted((r["row"], r["ground_truth"]) for r in _records(out, "stage1"))
    assert stage1 == [(row, 1.0 + row % 5) for row in (0, 1, 2, 4)]  # y* of write_judge_dataset
    assert printed.count("  95% interval") == 2
    with (out / "table3.csv").open() as handle:
        table = list(csv.DictReader(handle))
        assert [row["name"] for row in table] == ["stage1", "stage2"] and "gap_low" in table[0]
    assert (out / "table3.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Row by row, the same numbers as the judge computes them: y(s*) from a fresh forward pass over the
    # training-style context of the training CoT, y(s_hat) from the CoT-RAIL predictor with the same seed key.
    raw = setting["raw"]
    for name, adapter in (("stage1", None), ("stage2", raw["rows"]["stage2"]["adapter_name_or_path"])):
        settings = {key: raw[key] for key in ("model_name_or_path", "template", *JUDGE)}
        backend = load_backend(build_eval_config({**settings, "adapter_name_or_path": adapter}), with_cot=True)
        sampling = SamplingConfig(max_new_tokens=JUDGE["max_new_tokens"])
        predictor = JudgePredictor(backend, "cot_rail", sampling, n_cot=1, seed=JUDGE["seed"], renormalize=True)
        values = backend.score_tokens.numeric_values
        for record in _records(out, name)[:2]:
            instruction = (
                setting["rows"][record["row"]]["instruction"] if name == "stage1" else f"Grade answer {record['row']}."
            )
            prompt = JudgePrompt.from_instruction(instruction)
            ids = backend.contexts.score_context(prompt, record["train_cot"])
            with torch.no_grad():
                logits = backend.model(torch.tensor([ids])).logits[0, -1]
            probs = torch.softmax(logits.float(), -1)[list(backend.score_tokens.token_ids)].tolist()
            assert record["train_cot_score"] == pytest.approx(expected_score(probs, values, True), abs=1e-5)
            again = predictor.predict([prompt], [f"{record['benchmark']}/{record['row']}"])[0]
            assert again.cots == record["self_cots"]
            assert again.score == pytest.approx(record["self_cot_score"], abs=1e-5)


def test_stored_predictions_are_reused_only_for_unchanged_rows(setting, capsys):
    assert main(["report", "table3", str(setting["config"])]) == 0  # everything stored by the test above
    before = {name: len(_records(setting["out"], name)) for name in ("stage1", "stage2")}
    assert main(["report", "table3", str(setting["config"])]) == 0
    assert {name: len(_records(setting["out"], name)) for name in before} == before
    lines = setting["d_self"].read_text().splitlines()
    lines[1] = json.dumps({"instruction": "Grade answer 1.", "output": "An edited CoT. So the overall score is 1"})
    setting["d_self"].write_text("\n".join(lines) + "\n")
    assert main(["report", "table3", str(setting["config"])]) == 0
    records = _records(setting["out"], "stage2")
    assert len(records) == before["stage2"] + 1
    assert (records[-1]["row"], records[-1]["train_cot"], records[-1]["ground_truth"]) == (1, "An edited CoT.", 1.0)
    assert len(_records(setting["out"], "stage1")) == before["stage1"]
    table = {line["name"]: line for line in json.loads((setting["out"] / "table3.json").read_text())}
    current = {r["row"]: r for r in records}  # later records win, as in the store
    truth = [current[row]["ground_truth"] for row in range(3)]
    assert table["stage2"]["rmse_train_cot"] == pytest.approx(
        _rmse([current[row]["train_cot_score"] for row in range(3)], truth)
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("rows.stage1.limt=2", "unknown key `rows.stage1.limt` (did you mean `limit`?)"),
        ("temprature=0.5", "unknown key `temprature` (did you mean `temperature`?)"),
        ("predictor=rail", "`predictor` must be cot_rail"),
        ("score_only_prompt=true", "predictor 'cot_rail' samples a CoT first"),
        ("rows.stage1.dataset=missing_set", "rows.stage1: cannot read dataset 'missing_set'"),
        ("rows.stage2.path=/nowhere/d_self.jsonl", "rows.stage2.path: /nowhere/d_self.jsonl does not exist"),
    ],
)
def test_bad_config_or_missing_data_is_named(setting, capsys, override, message):
    out = setting["out"].with_name("errors")
    assert main(["report", "table3", str(setting["config"]), f"output_dir={out}", override]) == 2
    assert message in capsys.readouterr().err


def test_the_paper_recipe_points_at_a_table2_tract_run():
    config = load_table3_config(["yaml_configs/table3.yaml"])
    stage1, stage2 = config.row_judge("stage1"), config.row_judge("stage2")
    assert (config.rows["stage1"].dataset, stage1.adapter_name_or_path) == (
        "feedback_collection",
        "saves/mistral-7b/table2/shared/stage1_cotraft",
    )
    assert config.rows["stage2"].path == "saves/mistral-7b/table2/shared/d_self/d_self.jsonl"
    assert stage2.adapter_name_or_path == "saves/mistral-7b/table2/tract/stage2"
    assert (stage1.predictor, stage1.temperature, stage1.top_p, stage1.max_new_tokens) == ("cot_rail", 1.0, 0.9, 1024)


def test_the_demo_recipe_reads_the_demo_runs_as_they_were_trained(tmp_path, monkeypatch):
    """The recipe's wiring only: from an empty folder, so a finished local demo (and its judge cards) is not read."""
    from llamafactory_tract.demo.run import DEMO_CONFIGS

    monkeypatch.chdir(tmp_path)
    from llamafactory_tract.pipeline.config import load_pipeline_config

    config = load_table3_config([str(DEMO_CONFIGS / "table3.yaml"), "model_name_or_path=seed"])
    tract = load_pipeline_config([DEMO_CONFIGS / "tract.yaml"])
    stage1, stage2 = config.row_judge("stage1"), config.row_judge("stage2")
    assert stage1.adapter_name_or_path == tract.stage1.output_dir
    assert config.rows["stage2"].path == tract.self_generation.output
    assert stage2.adapter_name_or_path == str(Path(tract.run_dir) / "stage2")
    assert stage1.remove_reference and stage1.max_new_tokens == 256


def test_remove_reference_rewrites_the_training_prompts_as_training_did(tmp_path):
    from llamafactory_tract.data.authors_rules import AuthorsPromptRules
    from llamafactory_tract.data.score_format import ScoreFormat
    from llamafactory_tract.eval.table3 import Table3Row, load_training_examples

    prompt = (
        "###Task Description:\nGrade it.\n\n###The instruction to evaluate:\nSay hi.\n\n"
        "###Response to evaluate:\nhi\n\n"
        "###Reference Answer (Score 5):\nHello there!\n\n###Score Rubrics:\n[Polite?]\n\n###Feedback: "
    )
    data = tmp_path / "rows.jsonl"
    data.write_text(json.dumps({"instruction": prompt, "output": "Fine. So the overall score is 4"}) + "\n")
    row = Table3Row(path=str(data))
    kept, _ = load_training_examples("stage1", row, ScoreFormat(), AuthorsPromptRules())
    removed, _ = load_training_examples("stage1", row, ScoreFormat(), AuthorsPromptRules(remove_reference=True))
    assert "Hello there!" in kept[0].prompt.messages[-1]["content"]
    text = removed[0].prompt.messages[-1]["content"]
    assert "Hello there!" not in text and "###Response to evaluate:\nhi" in text and "###Score Rubrics:" in text
