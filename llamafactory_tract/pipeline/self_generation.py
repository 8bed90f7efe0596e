"""D_self (paper section 3.3): the stage-1 model's own CoTs, paired with the ground-truth scores.

For every training input the stage-1 model p_s samples one CoT up to the delimiter (paper
sampling settings); its score is discarded and y* attached. Generation is written to a
resumable JSONL store per batch (keyed by dataset and row, so a restart re-generates nothing
already written, and supports shards); only when every row is done is the clean LLaMA-Factory
dataset written, atomically, with a summary of CoTs that hit the token limit, were empty, or
were dropped.
"""

import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml
from tqdm import tqdm

from llamafactory_tract.data.prometheus import write_jsonl
from llamafactory_tract.data.score_format import InvalidJudgeResponse, ScoreFormat
from llamafactory_tract.eval.config import EvalConfig
from llamafactory_tract.extras.logging import get_logger
from llamafactory_tract.judge.backend import JudgePrompt, SamplingConfig
from llamafactory_tract.judge.loader import load_backend
from llamafactory_tract.judge.prediction_store import PredictionStore
from llamafactory_tract.judge.predictors import example_seed
from llamafactory_tract.judge.score_context import CLOSED_BY_DELIMITER

logger = get_logger(__name__)

SUMMARY_SUFFIX = ".summary.json"
SELF_DATASET_NAME = "tract_self"
DEFAULT_OUTPUT = "data/generated/d_self.jsonl"  # where data/dataset_info.json's `tract_self` points


@dataclass(frozen=True)
class TrainingInput:
    """One (x, y*) pair of the training set, with where it came from."""

    dataset: str
    row: int
    prompt: JudgePrompt
    score: str


@dataclass
class SelfGenerationSummary:
    inputs: int
    written: int
    closed_by_force: int
    empty_cots: int
    dropped_inputs: int
    closed_by: dict[str, int]


def load_training_inputs(
    dataset: str, dataset_dir: str, score_format: ScoreFormat, limit: int | None = None
) -> tuple[list[TrainingInput], list[str]]:
    """(x, y*) of a LLaMA-Factory dataset (hub or file, any supported response form) and the rows it skipped."""
    from llamafactory.data.loader import _get_merged_dataset
    from llamafactory.hparams import get_train_args

    model_args, data_args, training_args, _, _ = get_train_args(
        dict(
            model_name_or_path="unused-for-loading-data",
            template="empty",
            stage="cotraft",
            dataset=dataset,
            dataset_dir=dataset_dir,
            output_dir="saves/.self_generation",
            max_samples=limit,
            report_to="none",
        )
    )
    rows = _get_merged_dataset(data_args.dataset, model_args, data_args, training_args, stage="cotraft")
    inputs, skipped = [], []
    for example in rows:
        origin = f"dataset '{example['tract_dataset']}' row {example['tract_row']}"
        try:
            if len(example["_prompt"]) != 1 or len(example["_response"]) != 1:
                raise InvalidJudgeResponse("expected a one-turn prompt with one response")
            _, score = score_format.split_response(example["_response"][0]["content"])
        except InvalidJudgeResponse as error:
            skipped.append(f"{origin}: {error}")
            continue
        prompt = JudgePrompt(messages=example["_prompt"], system=example["_system"] or None)
        inputs.append(TrainingInput(example["tract_dataset"], example["tract_row"], prompt, score))
    return inputs, skipped


def shard_of(inputs: list[TrainingInput], shard_index: int, num_shards: int) -> list[TrainingInput]:
    if not 0 <= shard_index < num_shards:
        raise ValueError(f"shard_index must be in [0, {num_shards}), got {shard_index}.")
    return inputs[shard_index::num_shards]


def generate_self_cots(
    config: EvalConfig,
    inputs: list[TrainingInput],
    store_path: Path,
    drop_forced: bool = False,
) -> None:
    """Sample one CoT per input into the resumable store; rows already stored are not regenerated."""
    store = PredictionStore(store_path, config.prediction_hash())
    done = store.load()
    pending = [item for item in inputs if (item.dataset, item.row) not in done]
    if not pending:
        logger.info_rank0(f"D_self: all {len(inputs)} rows already generated in {store_path}.")
        return
    logger.info_rank0(f"D_self: {len(done)} rows already in {store_path}, generating {len(pending)}.")
    backend = load_backend(config, with_cot=True)
    sampling = SamplingConfig(config.temperature, config.top_p, config.repetition_penalty, config.max_new_tokens)
    score_format = config.score_format
    with tqdm(total=len(pending), desc="Generating D_self CoTs") as progress:
        for start in range(0, len(pending), config.batch_size):
            batch = pending[start : start + config.batch_size]
            seeds = [example_seed(config.seed, f"{item.dataset}/{item.row}") for item in batch]
            samples = backend.sample_cots([item.prompt for item in batch], sampling, seeds)
            records = []
            for item, sample in zip(batch, samples, strict=True):
                cot = sample.cot.strip()
                forced = sample.closed_by != CLOSED_BY_DELIMITER
                keep = bool(cot) and not (forced and drop_forced)
                records.append(
                    {
                        "benchmark": item.dataset,
                        "row": item.row,
                        "instruction": item.prompt.messages[0]["content"],
                        "system": item.prompt.system,
                        "output": score_format.format_response(cot, item.score) if keep else None,
                        "closed_by": sample.closed_by,
                        "empty_cot": not cot,
                        "generated_tokens": sample.generated_tokens,
                    }
                )
            store.append(records)
            progress.update(len(batch))


def finalize_self_dataset(
    config: EvalConfig, store_paths: list[Path], inputs: list[TrainingInput], output: Path, skipped_inputs: int
) -> SelfGenerationSummary:
    """Write the clean LLaMA-Factory dataset (and its summary) once every input has a stored CoT."""
    records: dict[tuple[str, int], dict[str, Any]] = {}
    for path in store_paths:
        records.update(PredictionStore(path, config.prediction_hash()).load())
    missing = [item for item in inputs if (item.dataset, item.row) not in records]
    if missing:
        raise RuntimeError(
            f"D_self is incomplete: {len(missing)} of {len(inputs)} inputs have no CoT yet "
            f"(first: dataset '{missing[0].dataset}' row {missing[0].row}); run the generation (all shards) again."
        )
    ordered = [records[(item.dataset, item.row)] for item in inputs]
    rows = [
        {"instruction": record["instruction"], "output": record["output"], "system": record["system"] or ""}
        for record in ordered
        if record["output"] is not None
    ]
    closed_by = Counter(record["closed_by"] for record in ordered)
    summary = SelfGenerationSummary(
        inputs=len(inputs),
        written=len(rows),
        closed_by_force=len(ordered) - closed_by[CLOSED_BY_DELIMITER],
        empty_cots=sum(record["empty_cot"] for record in ordered),
        dropped_inputs=skipped_inputs + len(ordered) - len(rows),
        closed_by=dict(closed_by),
    )
    write_jsonl(rows, output)
    summary_path = output.with_name(output.name + SUMMARY_SUFFIX)
    summary_path.write_text(json.dumps({**asdict(summary), "config_hash": config.prediction_hash()}, indent=2))
    logger.info_rank0(
        f"D_self written to {output}: {summary.written} of {summary.inputs} inputs; {summary.closed_by_force} CoTs "
        f"closed by force ({summary.closed_by}), {summary.empty_cots} empty, {summary.dropped_inputs} dropped."
    )
    return summary


def write_self_dataset_info(dataset: Path) -> Path:
    """A ``dataset_info.json`` beside D_self, so stage 2 can read it as ``tract_self`` with ``dataset_dir`` there."""
    info = {
        SELF_DATASET_NAME: {
            "file_name": dataset.name,
            "columns": {"prompt": "instruction", "response": "output", "system": "system"},
        }
    }
    path = dataset.parent / "dataset_info.json"
    path.write_text(json.dumps(info, indent=2))
    return path


def generation_store(output: Path, shard_index: int, num_shards: int) -> Path:
    suffix = f".shard{shard_index}of{num_shards}" if num_shards > 1 else ""
    return output.with_name(f"{output.stem}.generation{suffix}.jsonl")


def generate_self_dataset(
    config: EvalConfig,
    dataset: str,
    dataset_dir: str,
    output: Path,
    limit: int | None = None,
    drop_forced: bool = False,
    shard_index: int = 0,
    num_shards: int = 1,
) -> SelfGenerationSummary | None:
    """Generate this shard's CoTs (resuming), and write D_self once all shards are done.

    Returns the summary when D_self is complete, None while other shards still have rows to do.
    """
    if self_dataset_is_complete(config, output):
        logger.info_rank0(f"D_self {output} is complete; nothing to generate.")
        return None
    inputs, skipped = load_training_inputs(dataset, dataset_dir, config.score_format, limit)
    if skipped:
        logger.warning_rank0(f"D_self: skipped {len(skipped)} training rows: {'; '.join(skipped[:10])}")
    store = generation_store(output, shard_index, num_shards)
    generate_self_cots(config, shard_of(inputs, shard_index, num_shards), store, drop_forced)
    stores = [generation_store(output, index, num_shards) for index in range(num_shards)]
    done: set[tuple[str, int]] = set()
    for path in stores:
        done.update(PredictionStore(path, config.prediction_hash()).load())
    if len(done) < len(inputs):
        logger.info_rank0(f"D_self: shard {shard_index} done; {len(inputs) - len(done)} rows left in other shards.")
        return None
    summary = finalize_self_dataset(config, stores, inputs, output, len(skipped))
    write_self_dataset_info(output)
    return summary


def self_dataset_is_complete(config: EvalConfig, output: Path) -> bool:
    summary_path = output.with_name(output.name + SUMMARY_SUFFIX)
    if not (output.is_file() and summary_path.is_file()):
        return False
    return json.loads(summary_path.read_text()).get("config_hash") == config.prediction_hash()


GENERATION_KEYS = ("dataset", "dataset_dir", "output", "limit", "drop_forced", "shard_index", "num_shards")


def run_generation_config(path: str | Path, overrides: list[str] | None = None) -> SelfGenerationSummary | None:
    """``tract generate``: the generation keys above plus judge settings (model, adapter, backend, sampling)."""
    from llamafactory_tract.eval.config import EvalConfigError, apply_override, build_eval_config

    raw = yaml.safe_load(Path(path).read_text()) or {}
    for override in overrides or []:
        apply_override(raw, override)
    generation = {key: raw.pop(key) for key in GENERATION_KEYS if key in raw}
    if "dataset" not in generation:
        raise EvalConfigError(f"{path}: `dataset` (the stage-1 training dataset name) is required.")
    return generate_self_dataset(
        build_eval_config(raw, source=str(path)),
        dataset=generation["dataset"],
        dataset_dir=generation.get("dataset_dir", "data"),
        output=Path(generation.get("output", DEFAULT_OUTPUT)),
        limit=generation.get("limit"),
        drop_forced=bool(generation.get("drop_forced", False)),
        shard_index=int(generation.get("shard_index", 0)),
        num_shards=int(generation.get("num_shards", 1)),
    )
