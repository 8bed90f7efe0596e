"""``tract pipeline``: Algorithm 1 end to end, each step resumable and skipped when already complete.

stage 1 (CoT-RAFT on annotation CoTs, from p_0) -> D_self (p_s samples a CoT per training input,
y* attached) -> stage 2 (CoT-RAFT on D_self, from p_0 again unless ``init: stage1``) -> evaluation.
Training steps run ``llamafactory-cli train`` on a resolved YAML written into the run directory
(so multi-GPU runs take LLaMA-Factory's torchrun/DeepSpeed path, and the exact config is kept);
an interrupted stage resumes from its last checkpoint, an interrupted generation or evaluation
from the last row written.
"""

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from llamafactory_tract.eval.config import EvalConfig, EvalConfigError, build_eval_config
from llamafactory_tract.eval.evaluate import EvalReport, run_evaluation
from llamafactory_tract.extras.logging import get_logger
from llamafactory_tract.pipeline.config import PipelineConfig, TrainStep, deep_merge
from llamafactory_tract.pipeline.self_generation import SELF_DATASET_NAME, generate_self_dataset

logger = get_logger(__name__)


class PipelineConfigError(EvalConfigError):
    """A pipeline step cannot run as configured; the message names the step and what to change."""


TRAIN_COMPLETE_MARKER = "train_results.json"


def training_is_complete(output_dir: Path) -> bool:
    return (output_dir / TRAIN_COMPLETE_MARKER).is_file()


def resolve_training_config(
    config: PipelineConfig, step: TrainStep, output_dir: Path, extra: dict[str, Any]
) -> dict[str, Any]:
    """Recipe + pipeline model/template + step overrides + what the pipeline wires in (data, init)."""
    recipe = yaml.safe_load(Path(step.recipe).read_text())
    resolved = deep_merge(recipe, {"model_name_or_path": config.model_name_or_path, "template": config.template})
    resolved = deep_merge(resolved, {**step.overrides, **extra, "output_dir": str(output_dir)})
    checkpoints = sorted(output_dir.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[-1]))
    if checkpoints:
        resolved.update(resume_from_checkpoint=str(checkpoints[-1]), overwrite_output_dir=False)
    return resolved


def resolved_config_path(output_dir: Path) -> Path:
    """The resolved training YAML, kept beside (not inside) the output folder, e.g. ``run/stage2.yaml``."""
    return output_dir.with_name(output_dir.name + ".yaml")


RESUME_KEYS = ("resume_from_checkpoint", "overwrite_output_dir")


def changed_keys(saved: dict[str, Any], resolved: dict[str, Any]) -> list[str]:
    keys = (set(saved) | set(resolved)) - set(RESUME_KEYS)
    return sorted(key for key in keys if saved.get(key) != resolved.get(key))


def run_training(name: str, resolved: dict[str, Any], config_path: Path) -> None:
    """Run one LLaMA-Factory training in a child process, from the resolved YAML written to ``config_path``."""
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(yaml.safe_dump(resolved, sort_keys=False))
    cli = Path(sys.executable).parent / "llamafactory-cli"
    command = [str(cli) if cli.is_file() else "llamafactory-cli", "train", str(config_path)]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    logger.info_rank0(f"[{name}] {' '.join(command)}")
    subprocess.run(command, check=True, env=env)


def _train_step(config: PipelineConfig, name: str, step: TrainStep, extra: dict[str, Any]) -> Path:
    """Train unless this exact configuration already finished in the output folder (a different one is an error)."""
    output_dir = config.step_dir(name, step.output_dir)
    resolved = resolve_training_config(config, step, output_dir, extra)
    config_path = resolved_config_path(output_dir)
    if training_is_complete(output_dir):
        if not config_path.is_file():
            logger.warning_rank0(f"[{name}] reusing the finished training in {output_dir}; no {config_path} to check.")
            return output_dir
        changed = changed_keys(yaml.safe_load(config_path.read_text()), resolved)
        if changed:
            raise PipelineConfigError(
                f"[{name}] {output_dir} holds a finished training whose configuration differs in {changed} "
                f"(see {config_path}); give this step another output_dir, or remove the folder to retrain."
            )
        logger.info_rank0(f"[{name}] already complete in {output_dir}; skipped.")
        return output_dir
    run_training(name, resolved, config_path)
    if not training_is_complete(output_dir):
        raise RuntimeError(f"[{name}] finished without writing {output_dir / TRAIN_COMPLETE_MARKER}.")
    return output_dir


def judge_config(config: PipelineConfig, adapter: Path | None, raw: dict[str, Any], output_dir: Path) -> EvalConfig:
    """An eval/generation config on the pipeline's model, with the adapter the pipeline trained."""
    wired = {
        "model_name_or_path": config.model_name_or_path,
        "template": config.template,
        "adapter_name_or_path": str(adapter) if adapter else None,
        "output_dir": str(output_dir),
    }
    return build_eval_config(deep_merge(raw, wired), source=f"pipeline {config.display_name}")


def _self_generation_step(config: PipelineConfig, stage1_dir: Path) -> Path:
    step = config.self_generation
    stage1_recipe = deep_merge(yaml.safe_load(Path(config.stage1.recipe).read_text()), config.stage1.overrides)
    output = Path(step.output) if step.output else Path(config.run_dir) / "data" / "d_self.jsonl"
    generate_self_dataset(
        judge_config(config, stage1_dir, step.overrides, output.parent),
        dataset=step.dataset or stage1_recipe["dataset"],
        dataset_dir=step.dataset_dir or stage1_recipe.get("dataset_dir", "data"),
        output=output,
        limit=step.limit,
        drop_forced=step.drop_forced,
    )
    return output


def run_pipeline(config: PipelineConfig) -> EvalReport | None:
    """Run every configured step in order; returns the evaluation report if there is an evaluation."""
    stage1_dir = _train_step(config, "stage1", config.stage1, {}) if config.stage1 else None
    last_adapter = stage1_dir
    if config.self_generation:
        self_dataset = _self_generation_step(config, stage1_dir)
        data_wiring = {"dataset": SELF_DATASET_NAME, "dataset_dir": str(self_dataset.parent)}
    else:
        data_wiring = {}
    if config.stage2:
        init = {"adapter_name_or_path": str(stage1_dir)} if config.stage2.init == "stage1" else {}
        last_adapter = _train_step(config, "stage2", config.stage2, {**data_wiring, **init})
    if not config.evaluation:
        return None
    step = config.evaluation
    raw = deep_merge(yaml.safe_load(Path(step.recipe).read_text()), step.overrides)
    raw.setdefault("run_name", config.display_name)
    evaluation = judge_config(config, last_adapter, raw, config.step_dir("eval", step.output_dir))
    return run_evaluation(evaluation)
