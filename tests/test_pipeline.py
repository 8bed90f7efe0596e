"""Algorithm 1 end to end on a tiny random model: artefacts, D_self labels, stage-2 init, resume."""

import json
from pathlib import Path

import pytest
import yaml
from judge_data import write_judge_dataset

from llamafactory_tract.data.score_format import ScoreFormat
from llamafactory_tract.pipeline.config import load_pipeline_config
from llamafactory_tract.pipeline.runner import PipelineConfigError, _train_step, judge_config, run_pipeline
from llamafactory_tract.pipeline.self_generation import generate_self_cots, load_training_inputs

REPO_ROOT = Path(__file__).resolve().parents[1]
SMOKE_RECIPE = str(REPO_ROOT / "yaml_configs" / "cpu" / "cotraft_smoke.yaml")

pytestmark = pytest.mark.slow


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
        "run_dir": str(run_dir),
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


def test_tract_pipeline_end_to_end_and_stage2_starts_from_the_seed(tiny_model_dirs, tmp_path):
    model_dir, _ = tiny_model_dirs["tiktoken"]
    tract = load_pipeline_config([pipeline_yaml(tmp_path, model_dir, "seed", tmp_path / "tract")])

    # An interrupted generation: stage 1 finished, the first 4 D_self rows were written, then the "crash".
    stage1_dir = _train_step(tract, "stage1", tract.stage1, {})
    inputs, _ = load_training_inputs("judge", str(tmp_path / "data"), ScoreFormat())
    store = tmp_path / "shared" / "d_self" / "d_self.generation.jsonl"
    generation = judge_config(tract, stage1_dir, tract.self_generation.overrides, store.parent)
    generate_self_cots(generation, inputs[:4], store)
    written_before = store.read_text().splitlines()

    report = run_pipeline(tract)

    lines = store.read_text().splitlines()
    assert lines[:4] == written_before, "rows written before the interruption were regenerated"
    assert len(lines) == len(inputs) == 8
    for name in ("shared/stage1", "tract/stage2"):
        assert (tmp_path / name / "adapter_model.safetensors").is_file(), name
    assert (tmp_path / "tract" / "eval" / "metrics.json").is_file()
    assert report is not None and "mt_bench" in report.per_benchmark

    # A second run finds every step complete and redoes nothing.
    outputs = [
        *tmp_path.rglob("adapter_model.safetensors"),
        *tmp_path.rglob("d_self.jsonl"),
        *tmp_path.rglob("*.jsonl"),
    ]
    stamps = {path: path.stat().st_mtime_ns for path in outputs}
    run_pipeline(tract)
    assert {path: path.stat().st_mtime_ns for path in outputs} == stamps

    # A finished step is never silently reused for a different configuration.
    tract.stage2.overrides["learning_rate"] = 0.5
    with pytest.raises(PipelineConfigError, match=r"\[stage2\] .* differs in \['learning_rate'\]"):
        run_pipeline(tract)
    del tract.stage2.overrides["learning_rate"]

    # D_self carries y* (the training label), not the model's own score.
    d_self = [json.loads(line) for line in (tmp_path / "shared" / "d_self" / "d_self.jsonl").read_text().splitlines()]
    source = json.loads((tmp_path / "data" / "judge.json").read_text())
    labels = [ScoreFormat().split_response(row["output"])[1] for row in source]
    assert [ScoreFormat().split_response(row["output"])[1] for row in d_self] == labels
    summary = json.loads((tmp_path / "shared" / "d_self" / "d_self.jsonl.summary.json").read_text())
    assert summary["inputs"] == 8 and summary["closed_by_force"] + summary["closed_by"].get("delimiter", 0) == 8

    # Stage 2 started from the seed: no adapter given, and its first loss differs from a run started from p_s.
    stage2_config = yaml.safe_load((tmp_path / "tract" / "stage2.yaml").read_text())
    assert "adapter_name_or_path" not in stage2_config
    assert stage2_config["model_name_or_path"] == str(model_dir)
    a4 = load_pipeline_config([pipeline_yaml(tmp_path, model_dir, "stage1", tmp_path / "a4")])
    a4.evaluation = None
    run_pipeline(a4)
    a4_config = yaml.safe_load((tmp_path / "a4" / "stage2.yaml").read_text())
    assert a4_config["adapter_name_or_path"] == str(stage1_dir)
    assert first_logged_loss(tmp_path / "a4" / "stage2") != pytest.approx(
        first_logged_loss(tmp_path / "tract" / "stage2"), rel=1e-3
    )
