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

"""D_self (paper section 3.3): the stage-1 model's own CoTs, paired with the ground-truth scores.

For every training input the stage-1 model p_s samples one CoT up to the delimiter (paper
sampling settings); its score is discarded and y* attached. Generation is written to a
resumable JSONL store per batch (keyed by the judge settings with the adapter's content, and by
dataset, row and the row's prompt, so a restart re-generates nothing already written, an edited
row or a retrained adapter is never served a stale CoT, and shards work); only when every row is
done is the clean LLaMA-Factory dataset written, atomically, with y* and ``drop_forced`` applied
then, and a summary of CoTs that hit the token limit, were empty, or were dropped.

``remove_reference`` (for a stage-1 model trained with that key) samples each
CoT on the prompt without its reference answer, and D_self stores that prompt: the one its CoT was
written for. ``score_only_prompt`` is refused: it is the prompt of judges that write no CoT.
"""

import json
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llamafactory_tract.data.aligned_rows import one_turn_rows, read_aligned_rows
from llamafactory_tract.data.authors_rules import AuthorsPromptRules
from llamafactory_tract.data.score_format import InvalidJudgeResponse, ScoreFormat
from llamafactory_tract.extras.config_files import merge, parse_overrides, read_yaml, to_plain, validate
from llamafactory_tract.extras.fingerprint import digest
from llamafactory_tract.extras.jsonl import write_jsonl
from llamafactory_tract.extras.logging import get_logger
from llamafactory_tract.judge.backend import JudgePrompt
from llamafactory_tract.judge.config import JudgeConfig, JudgeConfigError, build_judge_config
from llamafactory_tract.judge.loader import load_backend
from llamafactory_tract.judge.prediction_loop import BatchPredictor, predict_resumable
from llamafactory_tract.judge.prediction_store import PredictionStore, RecordKey, input_hash
from llamafactory_tract.judge.predictors import example_seed
from llamafactory_tract.judge.score_context import CLOSED_BY_DELIMITER
from llamafactory_tract.pipeline.provenance import dataset_fingerprints

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

    @property
    def key(self) -> RecordKey:
        """Its store key: where it came from and what the model is asked (not y*, attached afterwards)."""
        return self.dataset, self.row, input_hash({"messages": self.prompt.messages, "system": self.prompt.system})


@dataclass
class SelfGenerationSummary:
    inputs: int
    written: int
    closed_by_force: int
    empty_cots: int
    dropped_inputs: int
    closed_by: dict[str, int]


def check_generation_config(config: JudgeConfig) -> None:
    """Refuse what D_self cannot honour: the no-feedback prompt asks for a score with no CoT to sample."""
    if config.score_only_prompt:
        raise JudgeConfigError(
            "score_only_prompt is the prompt of score-only judges, which write no CoT; D_self samples the "
            "stage-1 model's CoTs, so unset it for the generation (remove_reference is applied if set)."
        )


def load_training_inputs(
    dataset: str,
    dataset_dir: str,
    score_format: ScoreFormat,
    limit: int | None = None,
    remove_reference: bool = False,
) -> tuple[list[TrainingInput], list[str]]:
    """(x, y*) of a LLaMA-Factory dataset (hub or file, any supported response form) and the rows it skipped.

    With ``remove_reference``, x is the prompt without its reference answer (a prompt whose reference
    cannot be delimited is skipped; one without a reference is kept as it is).
    """
    rows = read_aligned_rows(dataset, dataset_dir, limit, output_dir="saves/.self_generation")
    rules = AuthorsPromptRules(remove_reference=remove_reference)
    judge_rows, skipped = one_turn_rows(rows)
    inputs, without_reference = [], 0
    for judge_row in judge_rows:
        try:
            _, score = score_format.split_response(judge_row.response)
            messages = judge_row.messages
            if rules.active:
                rewrite = rules.apply(messages[0]["content"])
                messages = [{**messages[0], "content": rewrite.text}]
                without_reference += not rewrite.reference_removed
        except InvalidJudgeResponse as error:
            skipped.append(f"{judge_row.origin}: {error}")
            continue
        prompt = JudgePrompt(messages=messages, system=judge_row.system)
        inputs.append(TrainingInput(judge_row.dataset, judge_row.row, prompt, score))
    if rules.active:
        logger.info_rank0(
            f"D_self: removed the reference answer from {len(inputs) - without_reference} of {len(inputs)} "
            f"prompts (remove_reference); {without_reference} had none."
        )
    return inputs, skipped


def shard_of(inputs: list[TrainingInput], shard_index: int, num_shards: int) -> list[TrainingInput]:
    if not 0 <= shard_index < num_shards:
        raise ValueError(f"shard_index must be in [0, {num_shards}), got {shard_index}.")
    return inputs[shard_index::num_shards]


def generate_self_cots(config: JudgeConfig, inputs: list[TrainingInput], store_path: Path) -> None:
    """Sample one CoT per input into the resumable store; rows already stored are not regenerated."""
    predict_resumable(
        inputs,
        key_of=lambda item: item.key,
        store=PredictionStore(store_path, config.prediction_hash()),
        open_predictor=lambda: _open_sampler(config),
        rows_per_batch=config.batch_size,
        length_of=lambda item: len(item.prompt.messages[0]["content"]),
        description="D_self",
    )


@contextmanager
def _open_sampler(config: JudgeConfig) -> Iterator[BatchPredictor]:
    backend = load_backend(config, with_cot=True)
    sampling = config.sampling_config()

    def sample(batch: list[TrainingInput]) -> list[dict[str, Any]]:
        seeds = [example_seed(config.seed, f"{item.dataset}/{item.row}") for item in batch]
        samples = backend.sample_cots([item.prompt for item in batch], sampling, seeds, with_scores=False)
        return [
            {"cot": sample.cot.strip(), "closed_by": sample.closed_by, "generated_tokens": sample.generated_tokens}
            for sample in samples
        ]

    try:
        yield sample
    finally:
        backend.close()  # the engine and its device memory, before D_self is finalised


def finalize_self_dataset(
    config: JudgeConfig,
    store_paths: list[Path],
    inputs: list[TrainingInput],
    output: Path,
    skipped_inputs: int,
    drop_forced: bool,
    key: str,
) -> SelfGenerationSummary:
    """Write the clean LLaMA-Factory dataset (and its summary) once every input has a stored CoT."""
    records: dict[RecordKey, dict[str, Any]] = {}
    for path in store_paths:
        records.update(PredictionStore(path, config.prediction_hash()).load())
    missing = [item for item in inputs if item.key not in records]
    if missing:
        raise RuntimeError(
            f"D_self is incomplete: {len(missing)} of {len(inputs)} inputs have no CoT yet "
            f"(first: dataset '{missing[0].dataset}' row {missing[0].row}); run the generation (all shards) again."
        )
    rows, closed_by, empty = [], Counter(), 0
    for item in inputs:
        record = records[item.key]
        closed_by[record["closed_by"]] += 1
        empty += not record["cot"]
        forced = record["closed_by"] != CLOSED_BY_DELIMITER
        if record["cot"] and not (forced and drop_forced):
            rows.append(
                {
                    "instruction": item.prompt.messages[0]["content"],
                    "output": config.score_format.format_response(record["cot"], item.score),
                    "system": item.prompt.system or "",
                }
            )
    summary = SelfGenerationSummary(
        inputs=len(inputs),
        written=len(rows),
        closed_by_force=len(inputs) - closed_by[CLOSED_BY_DELIMITER],
        empty_cots=empty,
        dropped_inputs=skipped_inputs + len(inputs) - len(rows),
        closed_by=dict(closed_by),
    )
    write_jsonl(rows, output)
    summary_path = output.with_name(output.name + SUMMARY_SUFFIX)
    summary_path.write_text(json.dumps({**asdict(summary), "generation_key": key}, indent=2))
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
    config: JudgeConfig,
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
    check_generation_config(config)
    key = generation_key(config, dataset, dataset_dir, limit, drop_forced)
    if self_dataset_is_complete(output, key):
        logger.info_rank0(f"D_self {output} is complete; nothing to generate.")
        return None
    inputs, skipped = load_training_inputs(dataset, dataset_dir, config.score_format, limit, config.remove_reference)
    if skipped:
        logger.warning_rank0(f"D_self: skipped {len(skipped)} training rows: {'; '.join(skipped[:10])}")
    store = generation_store(output, shard_index, num_shards)
    generate_self_cots(config, shard_of(inputs, shard_index, num_shards), store)
    stores = [generation_store(output, index, num_shards) for index in range(num_shards)]
    done: set[RecordKey] = set()
    for path in stores:
        done.update(PredictionStore(path, config.prediction_hash()).load())
    left = sum(item.key not in done for item in inputs)
    if left:
        logger.info_rank0(f"D_self: shard {shard_index} done; {left} rows left in other shards.")
        return None
    summary = finalize_self_dataset(config, stores, inputs, output, len(skipped), drop_forced, key)
    write_self_dataset_info(output)
    return summary


def generation_key(config: JudgeConfig, dataset: str, dataset_dir: str, limit: int | None, drop_forced: bool) -> str:
    """What a finished D_self was made from: judge settings with the adapter's content, the data's content."""
    data = dataset_fingerprints(dataset, dataset_dir)
    return digest([config.prediction_hash(), data, dataset, limit, drop_forced])


def self_dataset_is_complete(output: Path, key: str) -> bool:
    summary_path = output.with_name(output.name + SUMMARY_SUFFIX)
    if not (output.is_file() and summary_path.is_file()):
        return False
    return json.loads(summary_path.read_text()).get("generation_key") == key


class GenerationSettings(BaseModel):
    """The ``tract generate`` keys beside the judge settings (model, adapter, backend, sampling)."""

    model_config = ConfigDict(extra="forbid")

    dataset: str
    """The stage-1 training dataset name (in ``dataset_dir``/dataset_info.json)."""
    dataset_dir: str = "data"
    output: str = DEFAULT_OUTPUT
    limit: int | None = Field(default=None, ge=1)
    drop_forced: bool = False
    shard_index: int = Field(default=0, ge=0)
    num_shards: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _check_shard(self) -> "GenerationSettings":
        if self.shard_index >= self.num_shards:
            raise ValueError(f"`shard_index` must be below `num_shards` ({self.num_shards}), got {self.shard_index}.")
        return self


def run_generation_config(path: str | Path, overrides: list[str] | None = None) -> SelfGenerationSummary | None:
    """``tract generate``: the generation keys above plus judge settings (model, adapter, backend, sampling)."""
    source = str(path) + (f" (with {' '.join(overrides)})" if overrides else "")
    merged = merge(read_yaml(path, JudgeConfigError), parse_overrides(overrides or [], JudgeConfigError))
    raw = to_plain(merged, source, JudgeConfigError)
    generation = {key: raw.pop(key) for key in GenerationSettings.model_fields if key in raw}
    settings = validate(GenerationSettings, generation, source, JudgeConfigError)
    return generate_self_dataset(
        build_judge_config(raw, source=source),
        dataset=settings.dataset,
        dataset_dir=settings.dataset_dir,
        output=Path(settings.output),
        limit=settings.limit,
        drop_forced=settings.drop_forced,
        shard_index=settings.shard_index,
        num_shards=settings.num_shards,
    )
