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

"""``tract pipeline``: Algorithm 1 end to end, each step a child process, reused only when its key matches.

stage 1 (CoT-RAFT on annotation CoTs, from p_0) -> D_self (p_s samples a CoT per training input,
y* attached) -> stage 2 (CoT-RAFT on D_self, from p_0 again unless ``init: stage1``) -> evaluation.

Each step writes the resolved config it runs beside its output and runs it in a child process:
``llamafactory-cli train`` for the stages (so multi-GPU runs take LLaMA-Factory's torchrun/DeepSpeed
path), ``tract generate`` and ``tract eval`` for D_self and the evaluation (so every engine and its
device memory are gone before the next step). A step is reused only when its key (provenance.py)
and the runs of its upstream steps match what is recorded beside its output; otherwise it is redone,
and so is everything downstream (``refuse_stale`` stops instead, listing them). The same holds when
a file the step produced (adapter, D_self, predictions, metrics) no longer has the digest recorded
when it completed: an output changed outside the pipeline is not that step's output any more. A
training checkpoint is resumed only under the exact configuration that wrote it. The run folder and
every step output are locked for the duration (lock.py).
"""

import shutil
import sys
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from llamafactory_tract.eval.config import EVAL_COMMAND_KEYS, EvalConfig, build_eval_config
from llamafactory_tract.eval.datasets import get_benchmark_spec
from llamafactory_tract.eval.evaluate import METRICS_CSV, METRICS_JSON, PREDICTIONS_FILE, EvalReport, load_report
from llamafactory_tract.extras.config_files import merge, read_yaml, to_plain
from llamafactory_tract.extras.fingerprint import fingerprint_path
from llamafactory_tract.extras.logging import get_logger
from llamafactory_tract.judge.config import KEYED_WHEN_ON, PREDICTION_NEUTRAL_KEYS
from llamafactory_tract.pipeline.child import run_child, terminate_on_sigterm
from llamafactory_tract.pipeline.config import PipelineConfig, PipelineConfigError, StepName, TrainStep
from llamafactory_tract.pipeline.lock import RunLock
from llamafactory_tract.pipeline.provenance import (
    OutputChange,
    StepRecord,
    dataset_fingerprints,
    differences,
    now,
    output_changes,
    output_digests,
    read_record,
    record_path,
    step_key,
    write_record,
)
from llamafactory_tract.pipeline.self_generation import SELF_DATASET_NAME, SUMMARY_SUFFIX, check_generation_config

logger = get_logger(__name__)

TRAIN_COMPLETE_MARKER = "train_results.json"
RESUME_KEYS = ("resume_from_checkpoint", "overwrite_output_dir")
# Paths (their content enters the key as an input instead) and settings that never change the weights.
TRAIN_WIRING_KEYS = ("output_dir", "model_name_or_path", "adapter_name_or_path", "dataset_dir", *RESUME_KEYS)
TRAIN_OUTPUT_ONLY_KEYS = (
    "logging_steps",
    "plot_loss",
    "report_to",
    "save_strategy",
    "save_steps",
    "save_total_limit",
    "overwrite_cache",
    "run_name",
    "preprocessing_num_workers",
    "dataloader_num_workers",
    "ddp_timeout",
)
JUDGE_WIRING_KEYS = ("model_name_or_path", "adapter_name_or_path")
# What later steps load from a training output (a PEFT adapter); logs and plots beside it are not fingerprinted.
ADAPTER_FILES = ("adapter_config.json", "adapter_model.*")
SELF_DATASET_INFO = "dataset_info.json"
UNFINGERPRINTED = (
    "its record, written by an older tract pipeline, holds no fingerprint of its outputs: they cannot be checked"
)


class StepKind(StrEnum):
    """What runs a step: ``llamafactory-cli train``, ``tract generate`` or ``tract eval`` (part of its key)."""

    TRAIN = "train"
    GENERATE = "generate"
    EVAL = "eval"


class StepState(StrEnum):
    DONE = "done"
    PARTIAL = "partial"
    """Same key, unfinished: resumed."""
    STALE = "stale"
    """Made otherwise, or its outputs changed since: redone."""
    MISSING = "missing"


@dataclass
class Step:
    """One step as this configuration resolves it: what the child runs and the key of its output."""

    name: str
    kind: StepKind
    output: Path
    config: dict[str, Any]
    key_config: dict[str, Any]
    inputs: dict[str, str]
    upstream: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return step_key(self.kind, self.key_config, self.inputs)

    @property
    def config_path(self) -> Path:
        """The resolved config the child runs, beside the output (``run/stage2.yaml``, ``d_self.yaml``)."""
        if self.kind is StepKind.GENERATE:
            return self.output.with_suffix(".yaml")
        return resolved_config_path(self.output)

    @property
    def output_folder(self) -> Path:
        """The folder its output files are named in: the output itself, or D_self's folder."""
        return self.output.parent if self.kind is StepKind.GENERATE else self.output

    def output_names(self) -> list[str]:
        """The files it produces that later steps or reports read: what its record fingerprints."""
        if self.kind is StepKind.TRAIN:
            return sorted({path.name for pattern in ADAPTER_FILES for path in self.output.glob(pattern)})
        if self.kind is StepKind.GENERATE:
            return [self.output.name, SELF_DATASET_INFO]
        return [PREDICTIONS_FILE, METRICS_JSON, METRICS_CSV]

    def output_digests(self) -> dict[str, str]:
        return output_digests(self.output_folder, self.output_names())


@dataclass
class Assessment:
    state: StepState
    record: StepRecord | None = None
    config_changes: list[str] = field(default_factory=list)
    input_changes: list[str] = field(default_factory=list)
    output_changes: list[OutputChange] = field(default_factory=list)
    unfingerprinted: bool = False
    """Complete, but recorded before outputs were fingerprinted: what is on disk cannot be checked."""

    @property
    def outputs_untrusted(self) -> bool:
        return bool(self.output_changes) or self.unfingerprinted

    @property
    def reasons(self) -> list[str]:
        unchecked = [UNFINGERPRINTED] if self.unfingerprinted else []
        return [*self.config_changes, *self.input_changes, *map(str, self.output_changes), *unchecked]


def resolved_config_path(output_dir: Path) -> Path:
    """The resolved YAML, kept beside (not inside) the output folder, e.g. ``run/stage2.yaml``."""
    return output_dir.with_name(output_dir.name + ".yaml")


def resolve_training_config(
    config: PipelineConfig, step: TrainStep, output_dir: Path, extra: dict[str, Any]
) -> dict[str, Any]:
    """Recipe + pipeline model/template + step overrides + what the pipeline wires in (data, init)."""
    recipe = read_yaml(step.recipe, PipelineConfigError)
    wired = {**extra, "output_dir": str(output_dir)}
    pipeline_model = {"model_name_or_path": config.model_name_or_path, "template": config.template}
    return to_plain(merge(recipe, pipeline_model, step.overrides, wired), step.recipe, PipelineConfigError)


def judge_config(config: PipelineConfig, adapter: Path | None, raw: dict[str, Any], output_dir: Path) -> EvalConfig:
    """An eval/generation config on the pipeline's model, with the adapter the pipeline trained."""
    wired = {
        "model_name_or_path": config.model_name_or_path,
        "template": config.template,
        "adapter_name_or_path": str(adapter) if adapter else None,
        "output_dir": str(output_dir),
    }
    return build_eval_config({**raw, **wired}, source=f"pipeline {config.display_name}")


def _judge_key_config(judge: EvalConfig) -> dict[str, Any]:
    """The judge settings in a step's key; switches added later enter only when on, so finished runs stay done."""
    off = {key for key in KEYED_WHEN_ON if not getattr(judge, key)}
    return judge.model_dump(exclude={*PREDICTION_NEUTRAL_KEYS, *EVAL_COMMAND_KEYS, *JUDGE_WIRING_KEYS, *off})


def _train_step(config: PipelineConfig, name: str, step: TrainStep, upstream: dict[str, Step]) -> Step:
    output = config.step_dir(name, step.output_dir)
    extra: dict[str, Any] = {}
    if StepName.SELF_GENERATION in upstream:
        extra.update(dataset=SELF_DATASET_NAME, dataset_dir=str(upstream[StepName.SELF_GENERATION].output.parent))
    if StepName.STAGE1 in upstream:
        extra["adapter_name_or_path"] = str(upstream[StepName.STAGE1].output)
    resolved = resolve_training_config(config, step, output, extra)
    inputs = {"model": fingerprint_path(resolved["model_name_or_path"])}
    if StepName.SELF_GENERATION not in upstream:
        dataset_dir = resolved.get("dataset_dir", "data")
        inputs.update(dataset_fingerprints(resolved.get("dataset"), dataset_dir))
        inputs.update(dataset_fingerprints(resolved.get("eval_dataset"), dataset_dir))
    if StepName.STAGE1 not in upstream and resolved.get("adapter_name_or_path"):
        inputs["adapter"] = fingerprint_path(resolved["adapter_name_or_path"])
    inputs.update({f"step:{upstream_name}": previous.key for upstream_name, previous in upstream.items()})
    key_config = {
        key: value for key, value in resolved.items() if key not in (*TRAIN_WIRING_KEYS, *TRAIN_OUTPUT_ONLY_KEYS)
    }
    return Step(name, StepKind.TRAIN, output, resolved, key_config, inputs, tuple(upstream))


def _generation_step(config: PipelineConfig, stage1: Step) -> Step:
    step = config.self_generation
    output = Path(step.output) if step.output else Path(config.run_dir) / "data" / "d_self.jsonl"
    dataset = step.dataset or stage1.config["dataset"]
    dataset_dir = step.dataset_dir or stage1.config.get("dataset_dir", "data")
    judge = judge_config(config, stage1.output, step.overrides, output.parent)
    check_generation_config(judge)
    generation = {"dataset": dataset, "limit": step.limit, "drop_forced": step.drop_forced}
    child = {
        **judge.model_dump(exclude=set(EVAL_COMMAND_KEYS)),
        **generation,
        "dataset_dir": dataset_dir,
        "output": str(output),
    }
    inputs = {
        "model": fingerprint_path(config.model_name_or_path),
        **dataset_fingerprints(dataset, dataset_dir),
        "step:stage1": stage1.key,
    }
    key_config = {**_judge_key_config(judge), **generation}
    return Step(StepName.SELF_GENERATION, StepKind.GENERATE, output, child, key_config, inputs, (StepName.STAGE1,))


def _evaluation_step(config: PipelineConfig, last: Step | None) -> Step:
    step = config.evaluation
    output = config.step_dir("eval", step.output_dir)
    raw = to_plain(
        merge(read_yaml(step.recipe, PipelineConfigError), step.overrides), step.recipe, PipelineConfigError
    )
    raw.setdefault("run_name", config.display_name)
    judge = judge_config(config, last.output if last else None, raw, output)
    benchmarks = {name: bench.model_dump(exclude={"path"}) for name, bench in judge.benchmarks.items()}
    inputs = {"model": fingerprint_path(config.model_name_or_path)}
    for name, bench in judge.benchmarks.items():
        source = fingerprint_path(bench.path) if bench.path else get_benchmark_spec(name).hub_source
        inputs[f"benchmark:{name}"] = source
    if last is not None:
        inputs[f"step:{last.name}"] = last.key
    key_config = {**_judge_key_config(judge), "run_name": judge.run_name, "benchmarks": benchmarks}
    upstream = (last.name,) if last else ()
    return Step(StepName.EVALUATION, StepKind.EVAL, output, judge.model_dump(), key_config, inputs, upstream)


def build_steps(config: PipelineConfig) -> list[Step]:
    """Every configured step, resolved, in order; keys chain through the upstream steps' keys."""
    steps: dict[str, Step] = {}
    if config.stage1:
        steps[StepName.STAGE1] = _train_step(config, StepName.STAGE1, config.stage1, {})
    if config.self_generation:
        steps[StepName.SELF_GENERATION] = _generation_step(config, steps[StepName.STAGE1])
    if config.stage2:
        upstream = {name: steps[name] for name in (StepName.SELF_GENERATION,) if name in steps}
        if config.stage2.init == StepName.STAGE1:
            upstream[StepName.STAGE1] = steps[StepName.STAGE1]
        steps[StepName.STAGE2] = _train_step(config, StepName.STAGE2, config.stage2, upstream)
    if config.evaluation:
        steps[StepName.EVALUATION] = _evaluation_step(config, steps.get(StepName.STAGE2) or steps.get(StepName.STAGE1))
    return list(steps.values())


def is_complete(step: Step) -> bool:
    if step.kind is StepKind.TRAIN:
        return (step.output / TRAIN_COMPLETE_MARKER).is_file()
    if step.kind is StepKind.GENERATE:
        return step.output.is_file() and step.output.with_name(step.output.name + SUMMARY_SUFFIX).is_file()
    return (step.output / METRICS_JSON).is_file()


def checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (``trainer_state.json`` is saved last: one cut short is left out)."""
    found = [
        path
        for path in output_dir.glob("checkpoint-*")
        if path.name.split("-")[-1].isdigit() and (path / "trainer_state.json").is_file()
    ]
    return sorted(found, key=lambda path: int(path.name.split("-")[-1]))


def assess(step: Step, runs: dict[str, str]) -> Assessment:
    """done / partial (same key, unfinished: resumed) / stale (made otherwise, or its outputs changed
    since: redone) / missing.

    ``runs`` holds the run id of every upstream step that is done; an upstream step that is not done
    will run again, which makes this one stale too. A complete record without output digests (an
    older pipeline's) is stale: taking what is on disk now as the step's output would certify exactly
    the hand edits the digests exist to catch.
    """
    record = read_record(step.output)
    if record is None:
        if step.kind is StepKind.TRAIN and step.output.is_dir() and any(step.output.iterdir()):
            return Assessment(StepState.STALE, None, [], [f"{step.output} holds outputs without a provenance record"])
        return Assessment(StepState.MISSING)
    config_changes, input_changes, changed_upstream = [], [], set()
    if record.key != step.key:
        config_changes = differences(record.config, step.key_config)
        for name in sorted(set(record.inputs) | set(step.inputs)):
            if record.inputs.get(name) != step.inputs.get(name):
                if name.startswith("step:"):
                    changed_upstream.add(name[5:])
                    input_changes.append(f"upstream step `{name[5:]}` changed")
                else:
                    input_changes.append(f"`{name}` changed")
    for name in step.upstream:
        if name in changed_upstream:
            continue
        if name not in runs:
            input_changes.append(f"upstream step `{name}` is not done")
        elif record.upstream_runs.get(name) != runs[name]:
            input_changes.append(f"upstream step `{name}` was run again")
    if record.key != step.key and not config_changes and not input_changes:
        input_changes.append(f"its key changed ({record.key} -> {step.key})")
    changed = (
        [] if record.outputs is None else output_changes(record.outputs, step.output_digests(), step.output_folder)
    )
    unfingerprinted = record.state == "complete" and record.outputs is None
    if config_changes or input_changes or changed or unfingerprinted:
        return Assessment(StepState.STALE, record, config_changes, input_changes, changed, unfingerprinted)
    # Complete outputs under a matching record are this key's: outputs of another key are removed before a
    # new record is written (a crash between the child's end and the record's update loses nothing).
    return Assessment(StepState.DONE if is_complete(step) else StepState.PARTIAL, record)


def plan(steps: list[Step]) -> list[tuple[Step, Assessment]]:
    """What a run would do now, step by step (a step after one that is not done cannot be done)."""
    runs: dict[str, str] = {}
    planned = []
    for step in steps:
        assessment = assess(step, runs)
        if assessment.state is StepState.DONE:
            runs[step.name] = assessment.record.run_id
        planned.append((step, assessment))
    return planned


def format_status(config: PipelineConfig) -> str:
    """``tract pipeline --status``: one line per step with its state, key and output, and why it is stale."""
    lines = [f"{config.display_name} ({config.run_dir})", f"{'step':<16} {'state':<8} {'key':<16} output"]
    for step, assessment in plan(build_steps(config)):
        lines.append(f"{step.name:<16} {assessment.state:<8} {step.key:<16} {step.output}")
        lines += [f"{'':<16} - {reason}" for reason in assessment.reasons]
    return "\n".join(lines)


def stale_steps_message(planned: list[tuple[Step, Assessment]]) -> str:
    stale = [(step, assessment) for step, assessment in planned if assessment.state is StepState.STALE]
    return "; ".join(f"{step.name} ({', '.join(assessment.reasons)})" for step, assessment in stale)


class Runner:
    """Runs the planned steps in order under one lock; see the module docstring."""

    def __init__(self, lock: RunLock) -> None:
        self.lock = lock
        self.runs: dict[str, str] = {}

    def run(self, step: Step) -> None:
        assessment = assess(step, self.runs)
        if assessment.state is StepState.DONE:
            if assessment.record.state == "running":  # the child finished, the pipeline stopped before recording it
                self._complete(step, assessment.record)
            logger.info_rank0(f"[{step.name}] done in {step.output} (key {step.key}); skipped.")
            self.runs[step.name] = assessment.record.run_id
            return
        if assessment.state is StepState.STALE:
            logger.warning_rank0(f"[{step.name}] redoing {step.output}: {', '.join(assessment.reasons)}.")
        resume_from = self._prepare(step, assessment)
        resume = {"resume_from_checkpoint": str(resume_from), "overwrite_output_dir": False} if resume_from else {}
        config = {**step.config, **resume}  # not overwriting keeps the trainer log of the interrupted part
        step.config_path.parent.mkdir(parents=True, exist_ok=True)
        step.config_path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
        record = StepRecord(
            step=step.name,
            key=step.key,
            run_id=uuid.uuid4().hex[:12],
            state="running",
            config=step.key_config,
            inputs=step.inputs,
            upstream_runs={name: self.runs[name] for name in step.upstream},
            command=self._command(step),
            started=now(),
        )
        write_record(step.output, record)
        record.pid = run_child(step.name, record.command, on_start=self.lock.set_child)
        self.lock.set_child(None)
        if not is_complete(step):
            raise RuntimeError(f"[{step.name}] finished without writing its outputs in {step.output}.")
        self._complete(step, record)
        self.runs[step.name] = record.run_id

    @staticmethod
    def _complete(step: Step, record: StepRecord) -> None:
        """Record the step complete, with the digests its outputs are checked against from now on."""
        record.state, record.finished, record.outputs = "complete", now(), step.output_digests()
        write_record(step.output, record)

    def _prepare(self, step: Step, assessment: Assessment) -> Path | None:
        """Clear what a fresh attempt must not see; for training return the checkpoint to resume, if any."""
        if step.kind is not StepKind.TRAIN:
            rewritten = (
                [step.output, step.output.with_name(step.output.name + SUMMARY_SUFFIX)]
                if step.kind is StepKind.GENERATE
                else [step.output / METRICS_JSON, step.output / METRICS_CSV]
            )
            # An output changed since the step wrote it (for the evaluation, predictions.jsonl is also its
            # store) is not reused; one that cannot be checked is not either.
            untrusted = (
                [step.output_folder / name for name in step.output_names()]
                if assessment.unfingerprinted
                else [change.path for change in assessment.output_changes]
            )
            for stale in (*rewritten, *untrusted):
                stale.unlink(missing_ok=True)
            return None  # generation and evaluation stores keep only rows of the same key: they resume by row
        if assessment.record is None and assessment.state is StepState.STALE:
            raise PipelineConfigError(
                f"[{step.name}] {step.output} holds outputs that tract pipeline did not record "
                f"(no {record_path(step.output).name}): remove the folder, or give the step another output_dir."
            )
        found = checkpoints(step.output)
        if found and not is_complete(step) and not assessment.input_changes and not assessment.outputs_untrusted:
            self._check_resume(step, found[-1])
            return found[-1]
        if step.output.exists():
            shutil.rmtree(step.output)
        return None

    def _check_resume(self, step: Step, checkpoint: Path) -> None:
        """A checkpoint resumes only under the exact configuration that wrote it."""
        recorded_path = step.config_path
        recorded = yaml.safe_load(recorded_path.read_text()) if recorded_path.is_file() else {}
        changes = differences(_without_resume_keys(recorded), _without_resume_keys(step.config))
        if changes:
            raise PipelineConfigError(
                f"[{step.name}] {checkpoint} was written under another configuration ({recorded_path}); "
                f"it differs in {'; '.join(changes)}. Either restore those values to resume from {checkpoint.name}, "
                f"or remove {step.output} to train from scratch with the new configuration."
            )
        logger.info_rank0(f"[{step.name}] resuming from {checkpoint}.")

    @staticmethod
    def _command(step: Step) -> list[str]:
        if step.kind is StepKind.TRAIN:
            cli = Path(sys.executable).parent / "llamafactory-cli"
            return [str(cli) if cli.is_file() else "llamafactory-cli", "train", str(step.config_path)]
        subcommand = step.kind  # tract generate / tract eval
        return [sys.executable, "-m", "llamafactory_tract.cli", subcommand, str(step.config_path)]


def _without_resume_keys(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if key not in RESUME_KEYS}


def locked_folders(config: PipelineConfig, steps: list[Step]) -> list[Path]:
    """The run folder and every step output (shared steps live outside it)."""
    return [Path(config.run_dir), *(step.output for step in steps)]


def run_pipeline(config: PipelineConfig, refuse_stale: bool = False) -> EvalReport | None:
    """Run every configured step in order; returns the evaluation report if there is an evaluation."""
    steps = build_steps(config)
    with terminate_on_sigterm(), RunLock(locked_folders(config, steps)) as lock:
        planned = plan(steps)
        if refuse_stale and any(assessment.state is StepState.STALE for _, assessment in planned):
            raise PipelineConfigError(
                f"Stale steps (made by another configuration or from other inputs, or their outputs changed since): "
                f"{stale_steps_message(planned)}. "
                "Run without --refuse-stale to redo them and every step after them."
            )
        runner = Runner(lock)
        for step in steps:
            runner.run(step)
    evaluation = next((step for step in steps if step.kind is StepKind.EVAL), None)
    return load_report(evaluation.output) if evaluation else None
