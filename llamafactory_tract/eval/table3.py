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

"""``tract report table3``: paper Table 3, the distribution shift between training CoTs and self-generated ones.

For each row (a fine-tuned model and the data it was trained on: p_s on the GPT-4 CoTs, p_tract on
D_self), over its training rows (x, s*, y*), the same model predicts twice: ŷ(s*), the expected
score read right after the training CoT s* and the delimiter (teacher-forced, the training-style
context), and ŷ(ŝ), CoT-RAIL on a CoT ŝ it samples itself. The table gives RMSE(ŷ(s*), y*) and
RMSE(ŷ(ŝ), y*): a large gap means the model scores its own CoTs worse than the ones it was trained on.

Predictions go to ``<output_dir>/<row>/predictions.jsonl`` per batch, keyed as ``tract eval`` keys
them (judge settings with model and adapter by content; per record the row's prompt, CoT and y*),
so an interrupted run resumes and an edited row or retrained adapter is predicted again.
"""

import csv
import json
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from llamafactory_tract.data.aligned_rows import one_turn_rows, read_aligned_rows
from llamafactory_tract.data.authors_rules import AuthorsPromptRules
from llamafactory_tract.data.processor import check_single_cot_end
from llamafactory_tract.data.score_format import InvalidJudgeResponse, ScoreFormat
from llamafactory_tract.eval.evaluate import PREDICTIONS_FILE, describe_forced_cots
from llamafactory_tract.eval.intervals import (
    CONFIDENCE,
    N_RESAMPLES,
    SEED,
    Interval,
    percentile_interval,
    question_bootstrap,
)
from llamafactory_tract.eval.metrics import INTERVAL_LABEL, format_interval
from llamafactory_tract.extras.config_files import merge, parse_overrides, read_yaml, to_plain, validate
from llamafactory_tract.extras.logging import get_logger
from llamafactory_tract.judge.backend import JudgePrompt
from llamafactory_tract.judge.config import JudgeConfig, JudgeConfigError, expand_user
from llamafactory_tract.judge.loader import load_backend
from llamafactory_tract.judge.prediction_loop import BatchPredictor, predict_resumable
from llamafactory_tract.judge.prediction_store import PredictionStore, RecordKey, input_hash
from llamafactory_tract.judge.predictors import JudgePredictor, expected_score

logger = get_logger(__name__)

TABLE_NAME = "table3"
ROW_JUDGE_KEYS = ("model_name_or_path", "adapter_name_or_path", "template")
COMMAND_KEYS = frozenset({"rows", "run_root", "output_dir"})


class Table3Error(JudgeConfigError):
    """The Table 3 config or one of its datasets is unusable; the message names the row and the key."""


class Table3Row(BaseModel):
    """One line of the table: a fine-tuned model and the training data it was fine-tuned on."""

    model_config = ConfigDict(extra="forbid")

    dataset: str | None = None
    """A LLaMA-Factory dataset name in ``dataset_dir``/dataset_info.json (hub or file)."""
    dataset_dir: str = "data"
    path: str | None = None
    """Instead of ``dataset``: a JSONL of ``instruction``, ``output`` (``<CoT> So the overall score is <y>``)
    and optional ``system``, e.g. the pipeline's D_self."""
    limit: int | None = Field(default=None, ge=1)
    model_name_or_path: str | None = None
    adapter_name_or_path: str | None = None
    template: str | None = None
    train_cots: str = ""
    """Who wrote the training CoTs s* (the table's second column), e.g. ``p_a (GPT-4)``."""
    sampled_from: str = ""
    """The fine-tuned model ŝ is sampled from (third column), e.g. ``p_s``."""

    @field_validator("path", "dataset_dir")
    @classmethod
    def _expand(cls, value: str | None) -> str | None:
        return expand_user(value)

    @model_validator(mode="after")
    def _one_source(self) -> "Table3Row":
        if (self.dataset is None) == (self.path is None):
            raise ValueError("set exactly one of `dataset` (with `dataset_dir`) and `path`")
        return self


class Table3Config(JudgeConfig):
    """The judge keys shared by every row, plus ``rows`` and ``output_dir``."""

    rows: dict[str, Table3Row] = Field(min_length=1)
    run_root: str | None = None
    """Only for ``${run_root}`` in paths (the folder of a finished ``tract pipeline`` run)."""
    output_dir: str = "saves/table3"

    @field_validator("output_dir")
    @classmethod
    def _expand_output(cls, value: str) -> str:
        return expand_user(value)

    @model_validator(mode="after")
    def _table3_keys(self) -> "Table3Config":
        if self.predictor != "cot_rail":
            raise ValueError(
                f"Table 3 predicts ŷ(ŝ) with CoT-RAIL and ŷ(s*) with the expected score after s*; "
                f"`predictor` must be cot_rail, got {self.predictor!r}"
            )
        return self

    def row_judge(self, name: str) -> JudgeConfig:
        """The judge of row ``name``: the shared keys, with the row's model, adapter or template where it sets them."""
        row = self.rows[name]
        values = self.model_dump(exclude=set(COMMAND_KEYS))
        values.update({key: getattr(row, key) for key in ROW_JUDGE_KEYS if key in row.model_fields_set})
        return validate(JudgeConfig, values, f"rows.{name}", Table3Error)


def load_table3_config(items: list[str]) -> Table3Config:
    """YAML files merged left to right, then ``key=value`` overrides (``rows.stage1.limit=100``)."""
    files = [item for item in items if "=" not in item]
    overrides = [item for item in items if "=" in item]
    merged = merge(
        *(read_yaml(path, Table3Error) for path in files), parse_overrides(overrides, Table3Error), error=Table3Error
    )
    source = " ".join(items)
    return validate(Table3Config, to_plain(merged, source, Table3Error), source, Table3Error)


@dataclass(frozen=True)
class TrainingExample:
    """One training row (x, s*, y*) and where it came from."""

    dataset: str
    row: int
    prompt: JudgePrompt
    cot: str
    score: str

    @property
    def key(self) -> RecordKey:
        content = {"messages": self.prompt.messages, "system": self.prompt.system, "cot": self.cot, "y": self.score}
        return self.dataset, self.row, input_hash(content)


def load_training_examples(
    name: str, row: Table3Row, score_format: ScoreFormat, rules: AuthorsPromptRules
) -> tuple[list[TrainingExample], list[str]]:
    """(x, s*, y*) of the row's data, read by LLaMA-Factory as training reads it, and the rows it skipped.

    Skipped, as training drops them: a response without a valid score, an empty CoT, or a CoT that
    already contains the delimiter or ``[RESULT]``. ``rules`` (``remove_reference``) rewrite the prompt
    as that key did in training; a prompt without a reference is kept as it is.
    """
    with tempfile.TemporaryDirectory() as scratch:
        dataset, dataset_dir = row.dataset, row.dataset_dir
        if row.path is not None:
            dataset, dataset_dir = _register_file(name, Path(row.path), Path(scratch))
        try:
            rows = read_aligned_rows(dataset, dataset_dir, row.limit, output_dir=str(Path(scratch) / "unused"))
        except (ValueError, OSError) as error:
            raise Table3Error(
                f"rows.{name}: cannot read dataset '{dataset}' (dataset_dir {dataset_dir}): {error}"
            ) from None
    judge_rows, skipped = one_turn_rows(rows)
    examples = []
    for judge_row in judge_rows:
        try:
            cot, score = score_format.split_response(judge_row.response)
            if not cot:
                raise InvalidJudgeResponse("empty CoT")
            check_single_cot_end(cot, score_format.delimiter)
            messages = judge_row.messages
            if rules.active:
                messages = [*messages[:-1], {**messages[-1], "content": rules.apply(messages[-1]["content"]).text}]
        except InvalidJudgeResponse as error:
            skipped.append(f"{judge_row.origin}: {error}")
            continue
        prompt = JudgePrompt(messages=messages, system=judge_row.system)
        examples.append(TrainingExample(judge_row.dataset, judge_row.row, prompt, cot, score))
    return examples, skipped


def _register_file(name: str, path: Path, scratch: Path) -> tuple[str, str]:
    """A ``dataset_info.json`` in ``scratch`` naming the JSONL file, so LLaMA-Factory reads it like any dataset."""
    if not path.is_file():
        raise Table3Error(f"rows.{name}.path: {path} does not exist.")
    first = next((line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()), None)
    try:
        columns = set(json.loads(first)) if first else set()
    except (json.JSONDecodeError, TypeError) as error:
        raise Table3Error(f"rows.{name}.path: {path} is not JSONL ({error}).") from None
    if not {"instruction", "output"} <= columns:
        raise Table3Error(f"rows.{name}.path: {path} needs `instruction` and `output` columns, has {sorted(columns)}.")
    mapping = {"prompt": "instruction", "response": "output"} | ({"system": "system"} if "system" in columns else {})
    info = {path.stem: {"file_name": str(path.resolve()), "columns": mapping}}
    (scratch / "dataset_info.json").write_text(json.dumps(info))
    return path.stem, str(scratch)


def predict_row(
    judge: JudgeConfig, examples: list[TrainingExample], store: PredictionStore, title: str
) -> dict[RecordKey, dict[str, Any]]:
    """ŷ(s*) and ŷ(ŝ) for each example not in ``store`` yet, appended per batch; one backend for both."""
    return predict_resumable(
        examples,
        key_of=lambda example: example.key,
        store=store,
        open_predictor=lambda: _open_predictor(judge),
        rows_per_batch=judge.rows_per_batch(),
        length_of=lambda example: len(example.prompt.messages[0]["content"]),
        description=f"Table 3 ({title})",
    )


@contextmanager
def _open_predictor(judge: JudgeConfig) -> Iterator[BatchPredictor]:
    backend = load_backend(judge, with_cot=True)
    predictor = JudgePredictor.from_config(backend, judge)
    literals, values = list(judge.score_values), backend.score_tokens.numeric_values

    def predict(batch: list[TrainingExample]) -> list[dict[str, Any]]:
        prompts = [example.prompt for example in batch]
        sampled = predictor.predict(prompts, [f"{example.dataset}/{example.row}" for example in batch])
        forced = backend.score_cots(prompts, [example.cot for example in batch])
        return [
            {
                "ground_truth": float(example.score),
                "train_cot": example.cot,
                "train_cot_score": expected_score(probs, values, judge.renormalize_scores),
                "train_cot_probs": dict(zip(literals, probs, strict=True)),
                "self_cot_score": prediction.score,
                "self_cot_scores": prediction.cot_scores,
                "self_cot_probs": prediction.score_probs,
                "self_cots": prediction.cots,
                "closed_by": prediction.closed_by,
                "generated_tokens": prediction.generated_tokens,
            }
            for example, prediction, probs in zip(batch, sampled, forced, strict=True)
        ]

    try:
        yield predict
    finally:
        backend.close()


@dataclass
class Table3Line:
    name: str
    train_cots: str
    sampled_from: str
    rows: int
    skipped: int
    rmse_train_cot: float
    rmse_self_cot: float
    closed_by: dict[str, int] = field(default_factory=dict)
    intervals: dict[str, Interval] = field(default_factory=dict)
    """95% intervals of ``rmse_train_cot``, ``rmse_self_cot`` and ``gap`` (rows resampled, paired)."""

    @property
    def gap(self) -> float:
        return self.rmse_self_cot - self.rmse_train_cot


def table3_line(name: str, row: Table3Row, records: list[dict[str, Any]], skipped: int) -> Table3Line:
    truth = np.array([record["ground_truth"] for record in records], dtype=float)
    train_cot = np.array([record["train_cot_score"] for record in records], dtype=float)
    self_cot = np.array([record["self_cot_score"] for record in records], dtype=float)

    def rmses(rows: np.ndarray) -> np.ndarray:
        train, own = (float(np.sqrt(np.mean((scores[rows] - truth[rows]) ** 2))) for scores in (train_cot, self_cot))
        return np.array([train, own, own - train])

    # Training rows carry no question id, so rows are resampled; both RMSEs on the same draw (paired gap).
    distribution = question_bootstrap(rmses, list(range(len(records))))
    train_rmse, self_rmse, _ = rmses(np.arange(len(records)))
    return Table3Line(
        name=name,
        train_cots=row.train_cots,
        sampled_from=row.sampled_from,
        rows=len(records),
        skipped=skipped,
        rmse_train_cot=train_rmse,
        rmse_self_cot=self_rmse,
        closed_by=dict(Counter(reason for record in records for reason in record["closed_by"])),
        intervals=dict(
            zip(("rmse_train_cot", "rmse_self_cot", "gap"), percentile_interval(distribution), strict=True)
        ),
    )


def run_table3(config: Table3Config) -> list[Table3Line]:
    """Predict what is not stored yet, row by row, then write the table, its CSV/JSON and the bar plot.

    Every row's data is read and checked before any model loads, so a bad row fails in seconds.
    """
    output_dir = Path(config.output_dir)
    judges = {name: config.row_judge(name) for name in config.rows}
    data = {}
    for name, row in config.rows.items():
        examples, skipped = load_training_examples(name, row, judges[name].score_format, judges[name].prompt_rules)
        if skipped:
            logger.warning_rank0(f"Table 3 row {name}: skipped {len(skipped)} rows: {'; '.join(skipped[:5])}")
        if not examples:
            raise Table3Error(f"rows.{name}: no usable training row in its data ({len(skipped)} skipped).")
        data[name] = examples, len(skipped)
    lines = []
    for name, (examples, skipped) in data.items():
        store = PredictionStore(output_dir / name / PREDICTIONS_FILE, judges[name].prediction_hash())
        records = predict_row(judges[name], examples, store, name)
        lines.append(table3_line(name, config.rows[name], [records[example.key] for example in examples], skipped))
    write_table3(lines, output_dir)
    return lines


def format_table3(lines: list[Table3Line]) -> str:
    header = (
        f"{'row':<10} {'s*: training CoTs from':<24} {'ŝ: sampled from':<16} {'rows':>6} "
        f"{'RMSE ŷ(s*)':>11} {'RMSE ŷ(ŝ)':>10} {'gap':>7}"
    )
    body = []
    for line in lines:
        body.append(
            f"{line.name:<10} {line.train_cots:<24} {line.sampled_from:<16} {line.rows:>6d} "
            f"{line.rmse_train_cot:>11.3f} {line.rmse_self_cot:>10.3f} {line.gap:>7.3f}"
        )
        if line.intervals:
            bounds = (format_interval(line.intervals[key]) for key in ("rmse_train_cot", "rmse_self_cot", "gap"))
            body.append(f"{INTERVAL_LABEL:<59}" + "  ".join(bounds))
    rule = "-" * len(header)
    forced = describe_forced_cots({line.name: line.closed_by for line in lines})
    notes = [
        "RMSE against y* over each row's training data; both predictions by the row's fine-tuned model.",
        f"{int(CONFIDENCE * 100)}% intervals: percentile bootstrap over training rows ({N_RESAMPLES} resamples, "
        f"seed {SEED}); the gap's is paired.",
    ]
    return "\n".join([rule, header, rule, *body, rule, *notes, *([forced] if forced else [])])


def write_table3(lines: list[Table3Line], output_dir: Path) -> None:
    """``table3.txt`` (the console table), ``table3.csv``, ``table3.json`` and the bar plot ``table3.png``."""
    output_dir.mkdir(parents=True, exist_ok=True)
    base = output_dir / TABLE_NAME
    base.with_suffix(".txt").write_text(format_table3(lines) + "\n")
    payload = [{**line.__dict__, "gap": line.gap} for line in lines]
    base.with_suffix(".json").write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    with base.with_suffix(".csv").open("w", newline="") as handle:
        bounds = [f"{key}_{end}" for key in ("rmse_train_cot", "rmse_self_cot", "gap") for end in ("low", "high")]
        columns = [key for key in payload[0] if key not in ("closed_by", "intervals")] + bounds
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for line in payload:
            interval = {
                f"{key}_{end}": value
                for key, (low, high) in line["intervals"].items()
                for end, value in (("low", low), ("high", high))
            }
            writer.writerow({**line, **interval})
    plot_table3(lines, base.with_suffix(".png"))


def plot_table3(lines: list[Table3Line], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    positions = np.arange(len(lines))
    figure, axis = plt.subplots(figsize=(1.6 + 1.4 * len(lines), 3.5))
    for offset, label, values in (
        (-0.2, r"$\hat{y}(s^*)$: training CoT", [line.rmse_train_cot for line in lines]),
        (0.2, r"$\hat{y}(\hat{s})$: self-generated CoT", [line.rmse_self_cot for line in lines]),
    ):
        bars = axis.bar(positions + offset, values, width=0.4, label=label)
        axis.bar_label(bars, fmt="%.2f", fontsize=8)
    labels = [f"{line.name}\n{line.sampled_from}" if line.sampled_from else line.name for line in lines]
    axis.set_xticks(positions, labels)
    axis.set_ylabel(r"RMSE with $y^*$ (training data)")
    highest = max(max(line.rmse_train_cot, line.rmse_self_cot) for line in lines)
    axis.set_ylim(0, 1.35 * highest or 1.0)  # room for the legend above the bars
    axis.legend(fontsize=8, loc="upper center", ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=150)
    plt.close(figure)
