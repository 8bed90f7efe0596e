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

"""Evaluation benchmarks of Table 2: a registry of hub sources and two row formats.

Prometheus evaluation format (Vicuna Bench, MT Bench, FLASK): ``instruction`` is the full judge
prompt and the ground truth is the mean of the ``gpt4_score`` values (a list, or one number as in the
TRACT authors' ``feedback_collection_ood_test.json``). Feedback Bench: ``instruction`` plus an
``output`` that ends in ``[RESULT] y``. Real users load from the hub; a local ``path`` overrides it.
Malformed rows are reported with their index and never scored. The ``*_authors`` benchmarks are the
files the TRACT authors evaluated on (``inference/data/`` of their repository), read with their
instruction clean-up (trailing whitespace, commas and quotes stripped), as the paper's numbers were.
The authors' prompt rules for score-only judges (``data/authors_rules.py``) are applied last, with the
same function as in training, and counted in the log.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llamafactory_tract.data.authors_rules import AuthorsPromptRules
from llamafactory_tract.data.score_format import PROMETHEUS_RESULT_MARKER, InvalidJudgeResponse, ScoreFormat
from llamafactory_tract.extras.errors import TractUserError
from llamafactory_tract.extras.jsonl import parse_json_list
from llamafactory_tract.extras.logging import get_logger
from llamafactory_tract.extras.text_files import read_utf8

logger = get_logger(__name__)

PROMETHEUS_EVAL_COMMIT = "dcfb44272d5d0414832f5dbb8c2a05ebc2614234"
PROMETHEUS_EVAL_URL = (
    f"https://raw.githubusercontent.com/prometheus-eval/prometheus-eval/{PROMETHEUS_EVAL_COMMIT}/eval/benchmark/data/"
    "{}"
)
TRACT_AUTHORS_COMMIT = "dcb7a649a899274f2c072f7884dc94ad77a6ea19"
TRACT_AUTHORS_DATA_URL = f"https://raw.githubusercontent.com/d223302/TRACT/{TRACT_AUTHORS_COMMIT}/inference/data/{{}}"
MAX_REPORTED_ROWS = 10


class BenchmarkDataError(TractUserError):
    """A benchmark file is missing, unreadable or has malformed rows; the message names file and rows."""


@dataclass(frozen=True)
class BenchmarkRow:
    """One scored example; ``row`` is its 0-based position in the source file (the resume key)."""

    row: int
    instruction: str
    ground_truth: float
    source_id: Any = None


@dataclass(frozen=True)
class BenchmarkSpec:
    name: str
    title: str
    hub_source: str
    parse_row: Callable[[dict[str, Any], ScoreFormat], tuple[str, float]]
    clean_instruction: bool = False
    """``hub_source``: an HF dataset id, or a URL of a JSON file (loaded with ``datasets``' json builder).
    ``clean_instruction``: apply the authors' clean-up (``authors_instruction``) to every prompt."""


def parse_prometheus_row(record: dict[str, Any], score_format: ScoreFormat) -> tuple[str, float]:
    """(prompt, mean of ``gpt4_score``: a list or one score); raise ``InvalidJudgeResponse`` with the reason."""
    instruction = _instruction(record)
    scores = record.get("gpt4_score")
    if isinstance(scores, int | float | str) and not isinstance(scores, bool):
        scores = [scores]
    if not isinstance(scores, list) or not scores:
        raise InvalidJudgeResponse(f"`gpt4_score` must be a score or a non-empty list of scores, got {scores!r}")
    numbers = [float(score_format.canonical_literal(str(score))) for score in scores]
    return instruction, sum(numbers) / len(numbers)


def parse_feedback_bench_row(record: dict[str, Any], score_format: ScoreFormat) -> tuple[str, float]:
    """(prompt, the score after ``[RESULT]`` in ``output``)."""
    instruction = _instruction(record)
    output = record.get("output")
    if not isinstance(output, str) or PROMETHEUS_RESULT_MARKER not in output:
        raise InvalidJudgeResponse(f"`output` must end with '{PROMETHEUS_RESULT_MARKER} <score>', got {output!r:.80}")
    raw_score = output.rpartition(PROMETHEUS_RESULT_MARKER)[2]
    return instruction, float(score_format.canonical_literal(raw_score))


def authors_instruction(instruction: str) -> str:
    """The TRACT authors' clean-up of a local JSON file's prompt (``inference_utils/dataset_utils.py``):
    trailing whitespace, then commas, then double quotes, then whitespace are stripped, so a prompt ends
    with ``###Feedback:`` as their training prompts do."""
    return instruction.rstrip().rstrip(",").rstrip('"').rstrip()


def _instruction(record: dict[str, Any]) -> str:
    instruction = record.get("instruction")
    if not isinstance(instruction, str) or not instruction.strip():
        raise InvalidJudgeResponse("`instruction` is missing or empty")
    return instruction


BENCHMARKS: dict[str, BenchmarkSpec] = {
    spec.name: spec
    for spec in (
        BenchmarkSpec("feedback_bench", "FB Bench", "prometheus-eval/Feedback-Bench", parse_feedback_bench_row),
        BenchmarkSpec("flask", "FLASK", PROMETHEUS_EVAL_URL.format("flask_eval.json"), parse_prometheus_row),
        BenchmarkSpec(
            "vicuna_bench", "Vic. Bench", PROMETHEUS_EVAL_URL.format("vicuna_eval.json"), parse_prometheus_row
        ),
        BenchmarkSpec("mt_bench", "MT Bench", PROMETHEUS_EVAL_URL.format("mt_bench_eval.json"), parse_prometheus_row),
        *(
            BenchmarkSpec(f"{name}_authors", title, TRACT_AUTHORS_DATA_URL.format(file), parse_prometheus_row, True)
            for name, title, file in (
                ("feedback_bench", "FB Bench", "feedback_collection_ood_test.json"),
                ("flask", "FLASK", "flask_eval.json"),
                ("vicuna_bench", "Vic. Bench", "vicuna_eval.json"),
                ("mt_bench", "MT Bench", "mt_bench_eval.json"),
            )
        ),
    )
}


def get_benchmark_spec(name: str) -> BenchmarkSpec:
    if name not in BENCHMARKS:
        raise BenchmarkDataError(f"Unknown benchmark {name!r}; known benchmarks: {sorted(BENCHMARKS)}.")
    return BENCHMARKS[name]


def load_benchmark(
    name: str,
    score_format: ScoreFormat,
    path: str | None = None,
    limit: int | None = None,
    skip_malformed: bool = False,
    prompt_rules: AuthorsPromptRules | None = None,
) -> list[BenchmarkRow]:
    """Rows of one benchmark (first ``limit``), validated; malformed rows raise, or are skipped and reported.

    A prompt that lacks the section a rule rewrites is a malformed row (never scored on the wrong prompt).
    """
    spec = get_benchmark_spec(name)
    source = path or spec.hub_source
    records = read_local_records(Path(path)) if path else read_hub_records(spec.hub_source)
    if limit is not None:
        records = records[:limit]
    rows, problems, without_reference = [], [], []
    for index, record in enumerate(records):
        try:
            if not isinstance(record, dict):
                raise InvalidJudgeResponse(f"expected a JSON object, got {type(record).__name__}")
            instruction, truth = spec.parse_row(record, score_format)
            if spec.clean_instruction:
                instruction = authors_instruction(instruction)
            if prompt_rules is not None and prompt_rules.active:
                rewrite = prompt_rules.apply(instruction)
                instruction = rewrite.text
                if rewrite.reference_removed is False:
                    without_reference.append(index)
        except InvalidJudgeResponse as error:
            problems.append(f"row {index}: {error}")
            continue
        rows.append(BenchmarkRow(row=index, instruction=instruction, ground_truth=truth, source_id=record.get("idx")))
    if problems:
        message = (
            f"{name} ({source}): {len(problems)} of {len(records)} rows are malformed: "
            + "; ".join(problems[:MAX_REPORTED_ROWS])
            + (" ..." if len(problems) > MAX_REPORTED_ROWS else "")
        )
        if not skip_malformed:
            raise BenchmarkDataError(message + " (set `skip_malformed: true` for this benchmark to skip them)")
        logger.warning_rank0(f"Skipping malformed rows, not scored: {message}")
    if not rows:
        raise BenchmarkDataError(f"{name} ({source}): no valid rows to evaluate.")
    if prompt_rules is not None:
        _log_prompt_rules(name, prompt_rules, len(records), len(rows), without_reference)
    return rows


def _log_prompt_rules(
    name: str, rules: AuthorsPromptRules, total: int, kept: int, without_reference: list[int]
) -> None:
    others = f" (the other {total - kept} are malformed rows, reported above)" if kept < total else ""
    if rules.score_only_prompt:
        logger.info_rank0(
            f"{name}: rewrote {kept} of {total} prompts to the no-feedback form (score_only_prompt){others}."
        )
    if rules.remove_reference:
        absent = f" (first rows: {without_reference[:MAX_REPORTED_ROWS]})" if without_reference else ""
        logger.info_rank0(
            f"{name}: removed the reference answer from {kept - len(without_reference)} of {kept} prompts "
            f"(remove_reference); {len(without_reference)} had none{absent}."
        )


def read_local_records(path: Path) -> list[Any]:
    """A JSON list or JSON-lines file; errors name the file (and the line for JSONL or a byte that is not UTF-8)."""
    if not path.is_file():
        raise BenchmarkDataError(f"Benchmark file {path} does not exist.")
    text = read_utf8(path, BenchmarkDataError)
    if path.suffix == ".jsonl":
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise BenchmarkDataError(f"{path}: line {number} is not valid JSON ({error}).") from error
        return records
    return parse_json_list(text, path, BenchmarkDataError)


def read_hub_records(source: str) -> list[dict[str, Any]]:
    """Download a benchmark: an HF dataset id, or a URL of a JSON file."""
    from datasets import load_dataset

    if source.startswith(("http://", "https://")):
        dataset = load_dataset("json", data_files=source, split="train")
    else:
        dataset = load_dataset(source, split="train")
    return [dict(record) for record in dataset]
