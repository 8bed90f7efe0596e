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

"""``tract judge``: grade every row of a CSV / JSON / JSONL file or a hub dataset, write JSONL or CSV.

Each row becomes an absolute-grading prompt (``judge/prompts.py``) from its instruction, response,
rubric and optional reference answer; ``columns`` maps those fields to the data's column names. The
rubric is, in order of precedence: the config's ``rubric`` (for every row), a ``rubric`` column,
or a ``criteria`` column with ``score1_description`` ... ``score5_description`` columns. A row with a
reference answer gets the prompt with it; a row without one (no column, or an empty cell) gets the
reference-free prompt, and such rows are counted and listed. Rows with a missing or empty required
field, and, with the authors' ``score_only_prompt`` / ``remove_reference`` on, rows whose prompt lacks
the section a rule rewrites, are reported with their row number (0-based, in file order) and
skipped; the run goes on, unless no row is left (then it stops with the report). The prompts stay
as built (the judge rewrites each once, when grading), so a row's sampling and resume key is its
prompt as given, as in the Python API and the server.

Grades are appended per batch to ``<output>.progress.jsonl`` (keyed by row, checked against the
row's prompt and the judge's settings), so an interrupted run resumes; the output file is written
at the end, in row order.
"""

import csv
import io
import json
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import Field, field_validator

from llamafactory_tract.data.authors_rules import PromptSectionMissing
from llamafactory_tract.extras.jsonl import parse_json_list
from llamafactory_tract.extras.logging import get_logger
from llamafactory_tract.extras.paths import check_creatable_dir
from llamafactory_tract.extras.text_files import read_utf8
from llamafactory_tract.judge.api import TractJudge, prompt_key
from llamafactory_tract.judge.config import JudgeConfig, JudgeConfigError, load_command_config
from llamafactory_tract.judge.prediction_loop import BatchPredictor, predict_resumable
from llamafactory_tract.judge.prediction_store import PredictionStore
from llamafactory_tract.judge.prompts import RUBRIC_KEYS, InvalidRubric, absolute_prompt, format_rubric, prompt_parts
from llamafactory_tract.judge.relative import preference, score_distribution

logger = get_logger(__name__)

PAIR_FIELDS = ("response_a", "response_b")
FIELDS = ("instruction", "response", *PAIR_FIELDS, "reference_answer", "rubric", *RUBRIC_KEYS)
OUTPUT_FIELDS = (
    "row",
    "score",
    "score_unnormalized",
    "score_mass",
    "low_score_mass",
    "decoded_score",
    "cot_scores",
    "score_probs",
    "score_masses",
    "cots",
    "closed_by",
    "prompt_truncated",
)
PAIR_OUTPUT_FIELDS = (
    "row",
    "p_a_better",
    "p_tie",
    "p_b_better",
    "score_difference",
    "low_score_mass",
    "prompt_truncated",
    "a",
    "b",
)
SIDE_FIELDS = ("score", "score_mass", "decoded_score", "score_probs", "cots", "closed_by")
"""What each side of a pair keeps of its grade in the output."""
OUTPUT_SUFFIXES = (".jsonl", ".csv")
LOCAL_SUFFIXES = (".csv", ".json", ".jsonl")
STORE_NAME = "judge"
MAX_REPORTED_ROWS = 20


class GradeFileConfig(JudgeConfig):
    """``tract judge``: the judge keys plus the data's source, columns and output."""

    input: str
    """A local .csv/.json/.jsonl file, or a hub dataset id (loaded with ``datasets.load_dataset``)."""
    output: str
    """Where the grades go: .jsonl or .csv."""
    split: str = "train"
    subset: str | None = None
    limit: int | None = Field(default=None, ge=1)
    columns: dict[str, str] = Field(default_factory=dict)
    """Our field -> your column, e.g. ``{response: answer}``; unmapped fields use their own name."""
    rubric: str | dict[str, str] | None = None
    """One rubric for every row: a string, or criteria + score1_description..score5_description."""
    keep_columns: list[str] = Field(default_factory=list)
    """Input columns copied to the output (e.g. your ids)."""

    @field_validator("output")
    @classmethod
    def _output_format(cls, value: str) -> str:
        if Path(value).suffix not in OUTPUT_SUFFIXES:
            raise ValueError(f"must end with one of {list(OUTPUT_SUFFIXES)}")
        return value

    @field_validator("columns")
    @classmethod
    def _known_fields(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(FIELDS))
        if unknown:
            raise ValueError(f"maps unknown field(s) {unknown}; fields are {list(FIELDS)}")
        return value

    @field_validator("keep_columns")
    @classmethod
    def _no_clash(cls, value: list[str]) -> list[str]:
        clashes = sorted(set(value) & {*OUTPUT_FIELDS, *PAIR_OUTPUT_FIELDS})
        if clashes:
            raise ValueError(f"{clashes} clash with output fields {sorted({*OUTPUT_FIELDS, *PAIR_OUTPUT_FIELDS})}")
        return value

    @field_validator("rubric")
    @classmethod
    def _valid_rubric(cls, value: str | dict[str, str] | None) -> str | dict[str, str] | None:
        if value is not None:
            format_rubric(value)
        return value

    def column(self, name: str) -> str:
        return self.columns.get(name, name)


@dataclass
class GradeFileReport:
    graded: int
    skipped: list[tuple[int, str]]
    output: Path
    progress: Path
    closed_by: dict[str, int]
    mean_score: float | None
    low_mass_rows: list[int]
    min_score_mass: float
    truncated_rows: list[int]
    without_reference: list[int]
    pairwise: bool

    def summary(self) -> str:
        lines = [f"Graded {self.graded} rows -> {self.output} (per-batch progress in {self.progress})."]
        if self.mean_score is not None:
            lines.append(f"Mean {'P(A better)' if self.pairwise else 'expected score'}: {self.mean_score:.3f}.")
        forced = sum(count for reason, count in self.closed_by.items() if reason != "delimiter")
        if forced:
            detail = ", ".join(f"{reason}: {count}" for reason, count in sorted(self.closed_by.items()))
            lines.append(f"{forced} CoTs were closed without the delimiter ({detail}).")
        if self.low_mass_rows:
            lines.append(
                f"{len(self.low_mass_rows)} grades have low_score_mass (score tokens below {self.min_score_mass} of "
                f"the model's mass; distrust them): rows {_rows(self.low_mass_rows)}."
            )
        if self.truncated_rows:
            lines.append(
                f"{len(self.truncated_rows)} prompts were too long and shortened in the middle (prompt_truncated): "
                f"rows {_rows(self.truncated_rows)}."
            )
        if self.without_reference:
            lines.append(
                f"{len(self.without_reference)} rows had no reference: {_no_reference(self.without_reference)}"
            )
        if self.skipped:
            lines.append(f"Skipped {len(self.skipped)} rows: {_describe(self.skipped)}")
        return "\n".join(lines)


class RowProblem(ValueError):
    """A row that cannot be graded; the message names the field."""


def run_grade_file(items: list[str]) -> GradeFileReport:
    """Grade the rows that ``items`` (YAML files, key=value overrides) configure; the model loads only if needed."""
    config = load_command_config(items, GradeFileConfig, "tract judge")
    check_creatable_dir(Path(config.output).parent, "output")
    judge_config = config.judge_only()
    records = read_records(config)
    prompts, skipped, without_reference, per_row = build_prompts(records, config)
    if skipped:
        logger.warning_rank0(f"Skipping {len(skipped)} of {len(records)} rows: {_describe(skipped)}")
    if not prompts:
        raise JudgeConfigError(
            f"tract judge: none of the {len(records)} rows of {config.input} can be graded: "
            f"{_describe(skipped) or 'the input has no rows'}. Fix the rows or the `columns` mapping."
        )
    if without_reference:
        logger.warning_rank0(
            f"{len(without_reference)} rows have no reference answer: {_no_reference(without_reference)}"
        )
    output = Path(config.output)
    progress_path = output.with_name(output.name + ".progress.jsonl")
    done = predict_resumable(
        list(prompts),
        key_of=lambda row: (STORE_NAME, row, prompt_key(prompts[row])),
        store=PredictionStore(progress_path, judge_config.prediction_hash()),
        open_predictor=lambda: _open_grader(judge_config, prompts),
        rows_per_batch=judge_config.rows_per_batch(),
        length_of=lambda row: len(prompts[row]),
        description="tract judge",
    )
    # in item order; the flag follows this run's threshold, which is not part of the stored grades' key
    items = [{**record, "low_score_mass": record["score_mass"] < config.min_score_mass} for record in done.values()]
    if per_row == 1:
        graded, fields = items, OUTPUT_FIELDS
    else:
        values = [float(value) for value in config.score_values]
        graded = [_pair(items[index], items[index + 1], values) for index in range(0, len(items), 2)]
        fields = PAIR_OUTPUT_FIELDS
    write_grades(output, graded, records, config.keep_columns, fields)
    scores = [record["p_a_better" if per_row == 2 else "score"] for record in graded]
    return GradeFileReport(
        graded=len(graded),
        skipped=skipped,
        output=output,
        progress=progress_path,
        closed_by=dict(Counter(reason for record in items for reason in record["closed_by"])),
        mean_score=sum(scores) / len(scores) if scores else None,
        low_mass_rows=[record["row"] for record in graded if record["low_score_mass"]],
        truncated_rows=[record["row"] for record in graded if record["prompt_truncated"]],
        min_score_mass=config.min_score_mass,
        without_reference=without_reference,
        pairwise=per_row == 2,
    )


def _pair(record_a: dict[str, Any], record_b: dict[str, Any], values: list[float]) -> dict[str, Any]:
    """A row's relative grade (``judge/relative.py``) from the stored grades of its two responses."""
    p_a_better, p_tie, p_b_better = preference(
        score_distribution(record_a["score_probs"]), score_distribution(record_b["score_probs"]), values
    )
    return {
        "row": record_a["row"] // 2,
        "p_a_better": p_a_better,
        "p_tie": p_tie,
        "p_b_better": p_b_better,
        "score_difference": record_a["score"] - record_b["score"],
        "low_score_mass": record_a["low_score_mass"] or record_b["low_score_mass"],
        "prompt_truncated": record_a["prompt_truncated"] or record_b["prompt_truncated"],
        "a": {key: record_a[key] for key in SIDE_FIELDS},
        "b": {key: record_b[key] for key in SIDE_FIELDS},
    }


@contextmanager
def _open_grader(config: JudgeConfig, prompts: dict[int, str]) -> Iterator[BatchPredictor]:
    judge = TractJudge.from_config(config)
    try:
        yield lambda rows: [grade.to_dict() for grade in judge.grade_prompts([prompts[row] for row in rows])]
    finally:
        judge.close()


def read_records(config: GradeFileConfig) -> list[Any]:
    """The rows of a local file (by suffix) or of a hub dataset split, first ``limit`` only."""
    path = Path(config.input).expanduser()
    if path.is_file():
        records = _read_local(path)
    elif path.suffix in LOCAL_SUFFIXES:
        raise JudgeConfigError(f"Input file {path} does not exist.")
    else:
        records = _read_hub(config)
    return records[: config.limit] if config.limit is not None else records


def _read_local(path: Path) -> list[Any]:
    text = read_utf8(path, JudgeConfigError)
    if path.suffix == ".csv":
        return list(csv.DictReader(io.StringIO(text.removeprefix("\ufeff"), newline="")))
    if path.suffix == ".jsonl":
        return [_json_line(line) for line in text.splitlines() if line.strip()]
    if path.suffix != ".json":
        raise JudgeConfigError(f"Input file {path}: unsupported format; use one of {list(LOCAL_SUFFIXES)}.")
    return parse_json_list(text, path, JudgeConfigError)


def _json_line(line: str) -> Any:
    """A row, or the parse error (reported for that row like a missing field)."""
    try:
        return json.loads(line)
    except json.JSONDecodeError as error:
        return RowProblem(f"not valid JSON ({error})")


def _read_hub(config: GradeFileConfig) -> list[dict[str, Any]]:
    from datasets import load_dataset

    try:
        dataset = load_dataset(config.input, name=config.subset, split=config.split)
    except Exception as error:  # datasets raises many types (missing repo, split, network)
        raise JudgeConfigError(
            f"Input {config.input!r} is not a {'/'.join(LOCAL_SUFFIXES)} file, and loading it with "
            f"datasets.load_dataset (subset={config.subset!r}, split={config.split!r}) failed: {error}"
        ) from error
    return [dict(record) for record in dataset]


class RowPrompts(NamedTuple):
    prompts: dict[int, str]
    """The judge prompts of the rows that can be graded, by item: the row number, or for pairs 2 x row + side."""
    skipped: list[tuple[int, str]]
    """(row, reason) for each row that cannot."""
    without_reference: list[int]
    """Rows graded with the reference-free prompt although the data has a reference column."""
    per_row: int
    """Prompts per row: 1, or 2 for pairs (``response_a`` and ``response_b`` columns: a relative grade)."""


def build_prompts(records: list[Any], config: GradeFileConfig) -> RowPrompts:
    present = {key for record in records if isinstance(record, dict) for key in record}
    absent = [column for column in config.keep_columns if column not in present]
    if absent:
        columns = sorted(map(str, present))
        raise JudgeConfigError(f"`keep_columns` {absent} are not columns of {config.input}: {columns}.")
    rubric_source = _rubric_source(config, present)
    use_reference = config.column("reference_answer") in present
    sides = PAIR_FIELDS if all(config.column(field) in present for field in PAIR_FIELDS) else ("response",)
    built = RowPrompts({}, [], [], len(sides))
    for row, record in enumerate(records):
        try:
            prompts = [_row_prompt(record, config, rubric_source, use_reference, side) for side in sides]
            for prompt in prompts:
                _check_prompt_rules(prompt, config)
        except (RowProblem, InvalidRubric) as error:
            built.skipped.append((row, str(error)))
            continue
        built.prompts.update({row * len(sides) + side: prompt for side, prompt in enumerate(prompts)})
        if use_reference and prompt_parts(prompts[0])["reference_answer"] is None:
            built.without_reference.append(row)
    return built


def _rubric_source(config: GradeFileConfig, present: set[str]) -> str:
    if config.rubric is not None:
        return "config"
    if config.column("rubric") in present:
        return "rubric"
    if config.column("criteria") in present:
        return "criteria"
    raise JudgeConfigError(
        f"tract judge: no rubric. Set `rubric` (a string, or criteria + score1..5_description), or map a "
        f"rubric column (columns.rubric=...) or criteria columns (columns.criteria=..., "
        f"columns.score1_description=...). Columns in {config.input}: {sorted(map(str, present))}."
    )


def _row_prompt(
    record: Any, config: GradeFileConfig, rubric_source: str, use_reference: bool, response_field: str
) -> str:
    if isinstance(record, RowProblem):
        raise record
    if not isinstance(record, dict):
        raise RowProblem(f"expected an object with named fields, got {type(record).__name__}")
    instruction = _text(record, config.column("instruction"))
    response = _text(record, config.column(response_field))
    reference = _optional_text(record, config.column("reference_answer")) if use_reference else None
    if rubric_source == "config":
        rubric = config.rubric
    elif rubric_source == "rubric":
        rubric = record.get(config.column("rubric"))
        if not isinstance(rubric, dict):
            rubric = _text(record, config.column("rubric"))
    else:
        rubric = {key: _text(record, config.column(key)) for key in RUBRIC_KEYS}
    return absolute_prompt(instruction, response, rubric, reference)


def _check_prompt_rules(prompt: str, config: GradeFileConfig) -> None:
    """Refuse a row whose prompt the authors' rules cannot rewrite here, so it is skipped by its row number.

    Only checked: ``TractJudge.grade_prompts`` applies the rules itself, once, to the prompt as built.
    """
    try:
        config.prompt_rules.apply(prompt)
    except PromptSectionMissing as error:
        rules = [name for name in ("score_only_prompt", "remove_reference") if getattr(config, name)]
        raise RowProblem(f"{' + '.join(rules)} cannot rewrite its prompt: {error}") from None


def _optional_text(record: dict[str, Any], column: str) -> str | None:
    """A cell that may be missing or empty (then None); text otherwise."""
    value = record.get(column)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return _text(record, column)


def _text(record: dict[str, Any], column: str) -> str:
    value = record.get(column)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise RowProblem(f"`{column}` is {'missing' if value is None else 'empty'}")
    if isinstance(value, (dict, list)):
        raise RowProblem(f"`{column}` must be text, got {type(value).__name__}")
    return str(value)


def write_grades(
    output: Path, graded: list[dict[str, Any]], records: list[Any], keep_columns: list[str], fields: tuple[str, ...]
) -> None:
    """Write atomically: JSONL keeps the lists; CSV has one probability column per score and one per CoT."""
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    rows = [
        {
            "row": record["row"],
            **{column: records[record["row"]].get(column) for column in keep_columns},
            **{key: record[key] for key in fields[1:]},
        }
        for record in graded
    ]
    with partial.open("w", encoding="utf-8", newline="") as handle:
        if output.suffix == ".jsonl":
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        else:
            flat = [_flat_pair(row) if "a" in row else _flat_row(row) for row in rows]
            header = list(dict.fromkeys(key for row in flat for key in row))
            writer = csv.DictWriter(handle, fieldnames=header, lineterminator="\n")
            writer.writeheader()
            writer.writerows(flat)
    partial.replace(output)


def _flat_row(row: dict[str, Any]) -> dict[str, Any]:
    """CSV cells: probabilities averaged over CoTs (``prob_<score>``), CoTs as ``cot_1``.., reasons joined."""
    lists = ("cot_scores", "score_probs", "score_masses", "cots", "closed_by")
    flat = {key: value for key, value in row.items() if key not in lists}
    draws = row["score_probs"]
    for literal in draws[0] if draws else []:
        flat[f"prob_{literal}"] = sum(probs[literal] for probs in draws) / len(draws)
    for index, cot in enumerate(row["cots"], start=1):
        flat[f"cot_{index}"] = cot
    flat["closed_by"] = ";".join(row["closed_by"])
    return flat


def _rows(rows: list[int]) -> str:
    return ", ".join(map(str, rows[:MAX_REPORTED_ROWS])) + (" ..." if len(rows) > MAX_REPORTED_ROWS else "")


def _no_reference(rows: list[int]) -> str:
    return f"graded with the reference-free prompt (rows {_rows(rows)}); judges train with references: prefer them."


def _flat_pair(row: dict[str, Any]) -> dict[str, Any]:
    """CSV cells of a pair: the comparison, then each side's grade with ``a_`` / ``b_`` in front."""
    flat = {key: value for key, value in row.items() if key not in ("a", "b")}
    for side in ("a", "b"):
        flat.update({f"{side}_{key}": value for key, value in _flat_row(row[side]).items()})
    return flat


def _describe(skipped: list[tuple[int, str]]) -> str:
    shown = "; ".join(f"row {row}: {reason}" for row, reason in skipped[:MAX_REPORTED_ROWS])
    return shown + (f"; ... ({len(skipped) - MAX_REPORTED_ROWS} more)" if len(skipped) > MAX_REPORTED_ROWS else "")
