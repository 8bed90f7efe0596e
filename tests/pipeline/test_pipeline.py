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

"""Algorithm 1 end to end on a tiny random model: artefacts, provenance, D_self labels, stage-2 init, resume."""

import json
import os
from collections import Counter
from pathlib import Path

import pytest
import yaml

from llamafactory_tract.cli import main
from llamafactory_tract.data.score_format import ScoreFormat
from llamafactory_tract.demo.run import demo_configs
from llamafactory_tract.extras.config_files import TractConfigError
from llamafactory_tract.judge.config import JudgeConfigError
from llamafactory_tract.pipeline.config import PipelineConfigError, load_pipeline_config
from llamafactory_tract.pipeline.provenance import read_record
from llamafactory_tract.pipeline.runner import build_steps, judge_config, plan, run_pipeline
from llamafactory_tract.pipeline.self_generation import generate_self_cots, load_training_inputs
from tests.helpers.judge_data import write_judge_dataset
from tests.helpers.paths import REPO_ROOT

SMOKE_RECIPE = str(REPO_ROOT / "yaml_configs" / "cpu" / "cotraft_smoke.yaml")


def write_benchmark(path: Path, rows: int = 4) -> Path:
    records = [
        {
            "instruction": f"###Task Description: grade it.\n###Response to evaluate: answer {index}.",
            "gpt4_score": [1 + index % 5, 1 + (index + 1) % 5, 1 + index % 5],
            "gpt4_feedback": ["fine", "ok", "fine"],
        }
        for index in range(rows)
    ]
    path.write_text(json.dumps(records))
    return path


def pipeline_yaml(tmp_path: Path, model_dir: Path, init: str, run_dir: Path, stage1_lr: float = 0.05) -> Path:
    data_dir = write_judge_dataset(tmp_path / "data", rows=8)
    eval_recipe = tmp_path / "eval.yaml"
    eval_recipe.write_text(
        yaml.safe_dump(
            {
                "model_name_or_path": "replaced-by-the-pipeline",
                "template": "llama3",
                "predictor": "cot_rail",
                "backend": "hf",
                "max_new_tokens": 8,
                "batch_size": 4,
                "benchmarks": {"mt_bench": {"path": str(write_benchmark(tmp_path / "bench.json"))}},
            }
        )
    )
    train = {"dataset_dir": str(data_dir), "max_steps": 2, "disable_shuffling": True}
    config = {
        "run_dir": "{run_root}/" + run_dir.name,
        "run_root": str(tmp_path),
        "model_name_or_path": str(model_dir),
        "template": "llama3",
        "stage1": {
            "recipe": SMOKE_RECIPE,
            "output_dir": "{run_root}/shared/stage1",
            "overrides": {**train, "learning_rate": stage1_lr},
        },
        "self_generation": {
            "output": "{run_root}/shared/d_self/d_self.jsonl",
            "overrides": {"backend": "hf", "max_new_tokens": 8, "batch_size": 4, "template": "llama3"},
        },
        "stage2": {"recipe": SMOKE_RECIPE, "init": init, "overrides": {"max_steps": 2, "disable_shuffling": True}},
        "evaluation": {"recipe": str(eval_recipe)},
    }
    path = run_dir.with_suffix(".yaml")
    path.write_text(yaml.safe_dump(config))
    return path


def first_logged_loss(output_dir: Path) -> float:
    entries = [json.loads(line) for line in (output_dir / "trainer_log.jsonl").read_text().splitlines()]
    return next(entry["loss"] for entry in entries if "loss" in entry)


def states(config) -> dict[str, str]:
    return {step.name: assessment.state for step, assessment in plan(build_steps(config))}


def run_ids(tmp_path: Path) -> dict[str, str]:
    outputs = {
        "stage1": tmp_path / "shared" / "stage1",
        "self_generation": tmp_path / "shared" / "d_self" / "d_self.jsonl",
        "stage2": tmp_path / "tract" / "stage2",
        "evaluation": tmp_path / "tract" / "eval",
    }
    return {name: read_record(output).run_id for name, output in outputs.items()}


@pytest.mark.slow
def test_tract_pipeline_end_to_end_and_a_changed_step_redoes_everything_after_it(tiny_model_dirs, tmp_path, capsys):
    model_dir, _ = tiny_model_dirs["tiktoken"]
    config_path = pipeline_yaml(tmp_path, model_dir, "seed", tmp_path / "tract")
    tract = load_pipeline_config([config_path])
    assert set(states(tract).values()) == {"missing"}

    # Stage 1 alone, then an interrupted generation: the first 4 D_self rows were written, then the "crash".
    run_pipeline(tract.model_copy(update={"self_generation": None, "stage2": None, "evaluation": None}))
    stage1_dir = tmp_path / "shared" / "stage1"
    inputs, _ = load_training_inputs("judge", str(tmp_path / "data"), ScoreFormat())
    store = tmp_path / "shared" / "d_self" / "d_self.generation.jsonl"
    generate_self_cots(
        judge_config(tract, stage1_dir, tract.self_generation.overrides, store.parent), inputs[:4], store
    )
    written_before = store.read_text().splitlines()

    report = run_pipeline(tract)

    lines = store.read_text().splitlines()
    assert lines[:4] == written_before, "rows written before the interruption were regenerated"
    assert len(lines) == len(inputs) == 8
    for name in ("shared/stage1", "tract/stage2"):
        assert (tmp_path / name / "adapter_model.safetensors").is_file(), name
    assert (tmp_path / "tract" / "eval" / "metrics.json").is_file()
    assert report is not None and report.per_benchmark["mt_bench"]["n"] == 4
    # Generation and evaluation ran in child processes (their engines die with them), recorded with their key.
    for output, subcommand in (
        (tmp_path / "shared/d_self/d_self.jsonl", "generate"),
        (tmp_path / "tract/eval", "eval"),
    ):
        record = read_record(output)
        assert record.state == "complete" and record.pid not in (None, os.getpid()) and subcommand in record.command

    # A second run finds every step done and redoes nothing.
    outputs = [*tmp_path.rglob("adapter_model.safetensors"), *tmp_path.rglob("*.jsonl"), *tmp_path.rglob("*.json")]
    stamps = {path: path.stat().st_mtime_ns for path in outputs}
    assert set(states(tract).values()) == {"done"}
    run_pipeline(tract)
    assert {path: path.stat().st_mtime_ns for path in outputs} == stamps

    # Another stage-1 learning rate makes stage 1 and everything after it stale (shown without running anything).
    changed = load_pipeline_config([config_path], ["stage1.overrides.learning_rate=0.5"])
    assert set(states(changed).values()) == {"stale"}
    assert main(["pipeline", str(config_path), "stage1.overrides.learning_rate=0.5", "--status"]) == 0
    status = capsys.readouterr().out
    assert "stage1           stale" in status and "learning_rate: 0.05 -> 0.5" in status
    assert "upstream step `stage1` changed" in status and "evaluation       stale" in status

    # A longer D_self budget: stage 1 stays, D_self, stage 2 and the evaluation are redone (or refused on request).
    longer = load_pipeline_config([config_path], ["self_generation.overrides.max_new_tokens=10"])
    assert states(longer) == {"stage1": "done", "self_generation": "stale", "stage2": "stale", "evaluation": "stale"}
    with pytest.raises(PipelineConfigError, match=r"self_generation \(max_new_tokens: 8 -> 10\); stage2 \(upstream"):
        run_pipeline(longer, refuse_stale=True)
    before = run_ids(tmp_path)
    run_pipeline(longer)
    after = run_ids(tmp_path)
    assert after["stage1"] == before["stage1"]
    assert all(after[name] != before[name] for name in ("self_generation", "stage2", "evaluation"))
    assert len(store.read_text().splitlines()) == 16, "D_self was sampled again with the new budget"
    assert set(states(longer).values()) == {"done"} and set(states(tract).values()) == {"done", "stale"}

    # D_self carries y* (the training label), not the model's own score.
    d_self = [json.loads(line) for line in (tmp_path / "shared" / "d_self" / "d_self.jsonl").read_text().splitlines()]
    source = json.loads((tmp_path / "data" / "judge.json").read_text())
    labels = [ScoreFormat().split_response(row["output"])[1] for row in source]
    assert [ScoreFormat().split_response(row["output"])[1] for row in d_self] == labels
    # Its summary counts how each stored CoT ended: a random model never writes the delimiter.
    summary = json.loads((tmp_path / "shared" / "d_self" / "d_self.jsonl.summary.json").read_text())
    stored = [json.loads(line) for line in store.read_text().splitlines()[8:]]  # the rows of the new budget
    assert summary["closed_by"] == dict(Counter(record["closed_by"] for record in stored))
    assert summary["inputs"] == summary["written"] == summary["closed_by_force"] == 8
    assert "delimiter" not in summary["closed_by"] and summary["dropped_inputs"] == 0

    # Stage 2 started from the seed: no adapter given, and its first loss differs from a run started from p_s.
    stage2_config = yaml.safe_load((tmp_path / "tract" / "stage2.yaml").read_text())
    assert "adapter_name_or_path" not in stage2_config
    assert stage2_config["model_name_or_path"] == str(model_dir)
    a4 = load_pipeline_config([pipeline_yaml(tmp_path, model_dir, "stage1", tmp_path / "a4")])
    a4 = a4.model_copy(update={"evaluation": None, "self_generation": longer.self_generation})
    run_pipeline(a4)
    a4_config = yaml.safe_load((tmp_path / "a4" / "stage2.yaml").read_text())
    assert a4_config["adapter_name_or_path"] == str(stage1_dir)
    assert read_record(tmp_path / "shared" / "stage1").run_id == after["stage1"], "A.4 reuses the shared stage 1"
    assert first_logged_loss(tmp_path / "a4" / "stage2") != pytest.approx(
        first_logged_loss(tmp_path / "tract" / "stage2"), rel=1e-3
    )


def test_run_root_moves_every_folder_that_names_it(tiny_model_dirs, tmp_path):
    model_dir, _ = tiny_model_dirs["tiktoken"]
    moved = tmp_path / "elsewhere"
    config = load_pipeline_config(
        [pipeline_yaml(tmp_path, model_dir, "seed", tmp_path / "tract")], [f"run_root={moved}"]
    )
    outputs = [Path(config.run_dir), *(step.output for step in build_steps(config))]
    assert len(outputs) == 5 and all(path.is_relative_to(moved) for path in outputs), outputs


def test_authors_prompt_rules_enter_step_keys_only_when_on(tiny_model_dirs, tmp_path):
    """Runs finished before the switches existed keep their keys (they are not keyed while off)."""
    model_dir, _ = tiny_model_dirs["tiktoken"]
    path = pipeline_yaml(tmp_path, model_dir, "seed", tmp_path / "tract")
    plain = {step.name: step for step in build_steps(load_pipeline_config([path]))}
    on = ["self_generation.overrides.remove_reference=true", "evaluation.overrides.remove_reference=true"]
    removed = {step.name: step for step in build_steps(load_pipeline_config([path], on))}
    for name in ("self_generation", "evaluation"):
        assert not {"score_only_prompt", "remove_reference"} & set(plain[name].key_config), name
        assert removed[name].key_config["remove_reference"] is True and removed[name].key != plain[name].key
        assert removed[name].config["remove_reference"] is True  # and the child is told
    with pytest.raises(JudgeConfigError, match="score_only_prompt is the prompt of score-only judges"):
        build_steps(
            load_pipeline_config(
                [path],
                ["self_generation.overrides.predictor=rail", "self_generation.overrides.score_only_prompt=true"],
            )
        )


def test_demo_run_root_moves_every_step_of_every_row(tmp_path):
    run_root = tmp_path / "my-demo"
    configs = demo_configs(Path("seed-model"), run_root / "data", run_root / "data" / "mt_bench_eval.json", run_root)
    outputs = [path for config in configs for path in (Path(config.run_dir), *(s.output for s in build_steps(config)))]
    assert len(configs) == 3 and all(path.is_relative_to(run_root) for path in outputs), outputs


def test_pipeline_config_errors_name_the_key_and_file(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"run_dir": "r", "model_name_or_path": "m", "template": "t", "stage1": {}}))
    with pytest.raises(PipelineConfigError, match=r"p\.yaml: missing required key `stage1\.recipe`"):
        load_pipeline_config([path])
    with pytest.raises(PipelineConfigError, match=r"unknown key `stage1\.overides` \(did you mean `overrides`\?\)"):
        load_pipeline_config([path], ["stage1.recipe=x.yaml", "stage1.overides.lr=1"])
    with pytest.raises(PipelineConfigError, match=r"`self_generation` samples with the stage-1 model"):
        load_pipeline_config([path], ["stage1=null", "self_generation.limit=2"])
    assert issubclass(PipelineConfigError, TractConfigError) and not issubclass(PipelineConfigError, JudgeConfigError)
