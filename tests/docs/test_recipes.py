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

"""Every training recipe parses with LLaMA-Factory's own argument parser; the paper recipes match Appendix A."""

from pathlib import Path

import pytest
import yaml
from llamafactory.hparams import get_train_args

from llamafactory_tract.demo.run import DEMO_CONFIGS
from llamafactory_tract.hparams.effective_batch import EffectiveBatchError, gradient_accumulation_for
from tests.helpers.paths import REPO_ROOT

TRAINING_RECIPES = sorted(
    path
    for path in [*(REPO_ROOT / "yaml_configs").rglob("*.yaml"), *DEMO_CONFIGS.glob("*.yaml")]
    if "stage" in yaml.safe_load(path.read_text())
)
PAPER_RECIPES = {
    "tract_stage1.yaml": ("mistral", "feedback_collection"),
    "tract_stage2.yaml": ("mistral", "tract_self"),
    "tract_stage1_llama3.yaml": ("llama3", "feedback_collection"),
    "tract_stage2_llama3.yaml": ("llama3", "tract_self"),
}


def parse(path: Path, tmp_path: Path):
    config = yaml.safe_load(path.read_text())
    # This machine has no bf16-capable device; transformers refuses bf16 at parse time on CPU.
    config.update(bf16=False, output_dir=str(tmp_path / "out"))
    return get_train_args(config)


@pytest.mark.parametrize("path", TRAINING_RECIPES, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_recipe_parses_with_llamafactory(path, tmp_path):
    _, _, _, finetuning_args, _ = parse(path, tmp_path)
    assert finetuning_args.stage in {"cotraft", "sft"}


@pytest.mark.parametrize("name", sorted(PAPER_RECIPES))
def test_paper_recipes_follow_appendix_a(name, tmp_path):
    model_args, data_args, training_args, finetuning_args, _ = parse(REPO_ROOT / "yaml_configs" / name, tmp_path)
    template, dataset = PAPER_RECIPES[name]
    assert (data_args.template, data_args.dataset) == (template, [dataset])
    assert finetuning_args.stage == "cotraft" and finetuning_args.raft_lambda == 1.0
    assert finetuning_args.finetuning_type == "lora" and finetuning_args.lora_rank == 8
    assert finetuning_args.lora_target == ["all"]
    assert training_args.learning_rate == 1.0e-5 and training_args.num_train_epochs == 2.0
    assert training_args.lr_scheduler_type == "cosine" and training_args.warmup_ratio == 0.1
    assert training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps == 8  # 1 process
    assert finetuning_args.cotraft_effective_batch_size == 8
    assert data_args.cutoff_len == 3000
    assert yaml.safe_load((REPO_ROOT / "yaml_configs" / name).read_text())["bf16"] is True


def test_paper_recipes_keep_batch_8_on_any_device_count_that_divides_it(tmp_path):
    _, _, training_args, finetuning_args, _ = parse(REPO_ROOT / "yaml_configs" / "tract_stage1.yaml", tmp_path)
    per_device, effective = training_args.per_device_train_batch_size, finetuning_args.cotraft_effective_batch_size
    for world_size in (1, 2, 4, 8):
        assert per_device * gradient_accumulation_for(effective, per_device, world_size) * world_size == 8
    with pytest.raises(EffectiveBatchError, match="cannot be split over 3 processes"):
        gradient_accumulation_for(effective, per_device, 3)


PIPELINE_ROWS = sorted((REPO_ROOT / "yaml_configs" / "table2" / "rows").glob("*.yaml"))
SEED_MODELS = sorted((REPO_ROOT / "yaml_configs" / "table2" / "models").glob("*.yaml"))
DEMO_ROWS = [DEMO_CONFIGS / name for name in ("B2_ce_cot_decode.yaml", "A1_cotraft_gpt4_cotrail.yaml", "tract.yaml")]


def check_pipeline(config, tmp_path):
    """Each training step resolves to a config LLaMA-Factory parses; the evaluation to a valid judge config."""
    from llamafactory_tract.pipeline.runner import judge_config, resolve_training_config

    for name in ("stage1", "stage2"):
        step = getattr(config, name)
        if step is None:
            continue
        resolved = resolve_training_config(config, step, tmp_path / name, {})
        resolved.update(bf16=False)
        _, _, _, finetuning_args, _ = get_train_args(resolved)
        assert finetuning_args.stage == "cotraft"
        assert resolved["model_name_or_path"] == config.model_name_or_path
    if config.evaluation:
        raw = yaml.safe_load(Path(config.evaluation.recipe).read_text())
        evaluation = judge_config(config, None, {**raw, **config.evaluation.overrides}, tmp_path / "eval")
        assert evaluation.model_name_or_path == config.model_name_or_path


@pytest.mark.parametrize("model", SEED_MODELS, ids=lambda path: path.stem)
@pytest.mark.parametrize("row", PIPELINE_ROWS, ids=lambda path: path.stem)
def test_every_table2_recipe_resolves_for_both_seed_models(model, row, tmp_path, monkeypatch):
    from llamafactory_tract.pipeline.config import load_pipeline_config

    monkeypatch.chdir(REPO_ROOT)
    check_pipeline(load_pipeline_config([model, row]), tmp_path)


@pytest.mark.parametrize("row", DEMO_ROWS, ids=lambda path: path.stem)
def test_demo_recipes_resolve(row, tmp_path, monkeypatch):
    from llamafactory_tract.pipeline.config import load_pipeline_config

    monkeypatch.chdir(REPO_ROOT)
    check_pipeline(
        load_pipeline_config([row], {"model_name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct"}), tmp_path
    )


def test_table2_rows_have_the_paper_structure(monkeypatch):
    from llamafactory_tract.pipeline.config import load_pipeline_config

    monkeypatch.chdir(REPO_ROOT)
    rows = {path.stem: load_pipeline_config([SEED_MODELS[0], path]) for path in PIPELINE_ROWS}
    assert rows["tract"].stage2.init == "seed" and rows["A4_stage2_from_ps"].stage2.init == "stage1"
    assert rows["A1_cotraft_gpt4_cotrail"].stage2 is None and rows["B3_zeroshot_rail"].stage1 is None
    shared = rows["tract"].stage1.output_dir
    assert all(rows[name].stage1.output_dir == shared for name in ("A1_cotraft_gpt4_cotrail", "A2_ce_self_cotrail"))
    predictors = {
        name: config.evaluation.overrides["predictor"]
        for name, config in rows.items()
        if "predictor" in config.evaluation.overrides
    }
    assert predictors["B1_ce_nocot_decode"] == "decode" and predictors["B4_raft_nocot_rail"] == "rail"
    assert predictors["A3_ce_self_decode"] == "cot_decode" and predictors["tract"] == "cot_rail"


AUTHORS_MICRO_BATCH = {"mistral": 8, "llama3": 4}  # per_device_train_batch_size of their cot_raft_{mistral,llama}.yaml
AUTHORS_ROWS = sorted((REPO_ROOT / "yaml_configs" / "table2" / "authors_lambda").glob("*/*.yaml"))


@pytest.mark.parametrize("row", AUTHORS_ROWS, ids=lambda path: f"{path.parent.name}/{path.stem}")
def test_authors_lambda_rows_scale_the_raft_weight_by_their_micro_batch(row, tmp_path, monkeypatch):
    """raft_lambda = the authors' lambda / their micro-batch, in every CoT-RAFT stage; CE stages keep 0."""
    from llamafactory_tract.pipeline.config import load_pipeline_config
    from llamafactory_tract.pipeline.runner import resolve_training_config

    monkeypatch.chdir(REPO_ROOT)
    model = row.parent.name
    config = load_pipeline_config([row])
    check_pipeline(config, tmp_path)
    paper_row = REPO_ROOT / "yaml_configs" / "table2" / "rows" / row.name
    seed = load_pipeline_config([REPO_ROOT / "yaml_configs" / "table2" / "models" / f"{model}.yaml", paper_row])
    authors_lambda = float(row.stem.rpartition("_")[2]) if row.stem.startswith("figure2") else 1.0
    assert config.model_name_or_path == seed.model_name_or_path and config.template == seed.template
    assert "authors_lambda" in config.run_root and config.run_root != seed.run_root
    for name in ("stage1", "stage2"):
        step, paper_step = getattr(config, name), getattr(seed, name)
        assert (step is None) == (paper_step is None)
        if step is None:
            continue
        resolved = resolve_training_config(config, step, tmp_path / name, {})
        resolved.update(bf16=False)
        _, _, _, finetuning_args, _ = get_train_args(resolved)
        paper_lambda = paper_step.overrides.get("raft_lambda", 1.0)
        expected = 0.0 if paper_lambda == 0 else authors_lambda / AUTHORS_MICRO_BATCH[model]
        assert finetuning_args.raft_lambda == pytest.approx(expected), (name, paper_lambda)
        assert Path(step.output_dir or config.run_dir).is_relative_to(config.run_root)


def test_authors_lambda_rows_cover_every_cotraft_row_and_the_figure2_grid_for_both_models():
    for model in AUTHORS_MICRO_BATCH:
        names = {path.stem for path in AUTHORS_ROWS if path.parent.name == model}
        expected = {"tract", "A1_cotraft_gpt4_cotrail", "A2_ce_self_cotrail", "A3_ce_self_decode", "A4_stage2_from_ps"}
        expected |= {"B4_raft_nocot_rail", *(f"figure2_lambda_{value}" for value in ("0.2", "0.5", "2", "5", "10"))}
        assert names == expected, model


@pytest.mark.parametrize("model", SEED_MODELS, ids=lambda path: path.stem)
@pytest.mark.parametrize("row", PIPELINE_ROWS, ids=lambda path: path.stem)
def test_every_row_evaluates_on_the_authors_files_with_the_benchmarks_layer(model, row, tmp_path, monkeypatch):
    from llamafactory_tract.eval.datasets import BENCHMARKS
    from llamafactory_tract.pipeline.config import load_pipeline_config

    monkeypatch.chdir(REPO_ROOT)
    layer = REPO_ROOT / "yaml_configs" / "table2" / "benchmarks" / "authors_data.yaml"
    paper, authors = load_pipeline_config([model, row]), load_pipeline_config([model, row, layer])
    check_pipeline(authors, tmp_path)
    assert authors.evaluation.overrides == paper.evaluation.overrides, "the row keeps its predictor and n_cot"
    benchmarks = yaml.safe_load(Path(authors.evaluation.recipe).read_text())["benchmarks"]
    assert set(benchmarks) == {f"{name}_authors" for name in ("feedback_bench", "flask", "vicuna_bench", "mt_bench")}
    assert all(
        BENCHMARKS[name].clean_instruction and "d223302/TRACT" in BENCHMARKS[name].hub_source for name in benchmarks
    )
