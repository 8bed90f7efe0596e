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

"""Report, refuse or drop the rows the ``cotraft`` processor marked invalid, then drop our bookkeeping columns.

Invalid rows are found during preprocessing, never at step N of a long run. A map-style dataset
is checked as a whole: one report (count, reasons, first rows) and the rows dropped, or with
``cotraft_strict_data`` an error listing them. A streaming dataset is only read while training,
so the same check is a lazy ``filter``: each invalid row is logged (or, strict, stops the run)
when it is reached, and never reaches the trainer. The TRACT authors' data rules, when on, are
counted in the same report (map-style datasets; a stream logs its dropped rows one by one).
"""

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

from llamafactory_tract.data.authors_rules import missing_delimiter_reason, prompt_rules_of
from llamafactory_tract.data.processor import (
    INVALID_REASON_COLUMN,
    PROMPT_REWRITTEN_COLUMN,
    REFERENCE_ABSENT,
    REFERENCE_COLUMN,
    REFERENCE_NOT_APPLIED,
    REFERENCE_REMOVED,
    TRUNCATED_COLUMN,
)
from llamafactory_tract.data.row_origin import ORIGIN_DATASET_COLUMN, ORIGIN_ROW_COLUMN
from llamafactory_tract.extras.errors import TractUserError
from llamafactory_tract.extras.logging import get_logger

if TYPE_CHECKING:
    from datasets import Dataset, IterableDataset

    from llamafactory_tract.hparams.data_args import TractDataArguments

logger = get_logger(__name__)

MAX_REPORTED_ROWS = 10
BOOKKEEPING_COLUMNS = [
    ORIGIN_DATASET_COLUMN,
    ORIGIN_ROW_COLUMN,
    INVALID_REASON_COLUMN,
    TRUNCATED_COLUMN,
    PROMPT_REWRITTEN_COLUMN,
    REFERENCE_COLUMN,
]
STRICT_HINT = " (`cotraft_strict_data: true`; fix the rows or unset it to drop them)"


class InvalidTrainingData(TractUserError):
    """Raised in strict mode when rows of the dataset cannot be trained on."""


def describe_invalid_rows(origins: list[tuple[str, int]], reasons: list[str], total: int, split: str) -> str:
    """One readable paragraph: count, reasons by frequency, and the first offending rows (0-based)."""
    counts = Counter(reasons)
    by_reason = "; ".join(f"{count} x {reason}" for reason, count in counts.most_common())
    ordered = sorted(zip(origins, reasons, strict=True))[:MAX_REPORTED_ROWS]
    first = "; ".join(f"dataset '{name}' row {row}: {reason}" for (name, row), reason in ordered)
    return f"{len(reasons)} of {total} {split} rows are invalid ({by_reason}). First (0-based rows): {first}."


def first_rows(origins: list[tuple[str, int]]) -> str:
    return "; ".join(f"dataset '{name}' row {row}" for name, row in sorted(origins)[:MAX_REPORTED_ROWS])


def describe_authors_rules(dataset: "Dataset", split: str, data_args: "TractDataArguments") -> list[str]:
    """One line per TRACT authors' data rule that is on: how many rows it changed, dropped or found without
    its section (those rows named), so an opt-in rule never acts silently."""
    if not (prompt_rules_of(data_args).active or data_args.cotraft_require_delimiter):
        return []
    total = len(dataset)
    origins = list(zip(dataset[ORIGIN_DATASET_COLUMN], dataset[ORIGIN_ROW_COLUMN], strict=True))
    lines = []
    if data_args.score_only_prompt:
        rewritten = sum(dataset[PROMPT_REWRITTEN_COLUMN])
        rest = f"; the other {total - rewritten} are invalid rows, reported below" if rewritten < total else ""
        lines.append(
            f"Rewrote {rewritten} of {total} {split} prompts to the no-feedback form (score_only_prompt){rest}."
        )
    if data_args.remove_reference:
        outcomes = dataset[REFERENCE_COLUMN]
        absent = [origin for origin, outcome in zip(origins, outcomes, strict=True) if outcome == REFERENCE_ABSENT]
        not_reached = outcomes.count(REFERENCE_NOT_APPLIED)
        lines.append(
            f"Removed the reference answer from {outcomes.count(REFERENCE_REMOVED)} of {total} {split} prompts "
            f"(remove_reference); {len(absent)} had none and are kept as they are"
            + (f" (first: {first_rows(absent)})" if absent else "")
            + (f"; {not_reached} are invalid rows, reported below." if not_reached else ".")
        )
    if data_args.cotraft_require_delimiter:
        reason = missing_delimiter_reason(data_args.score_delimiter)
        reasons = dataset[INVALID_REASON_COLUMN]
        missing = [origin for origin, text in zip(origins, reasons, strict=True) if text == reason]
        lines.append(
            f"Dropped {len(missing)} of {total} {split} rows without {data_args.score_delimiter!r} in the response "
            "(cotraft_require_delimiter) instead of closing their CoT with it"
            + (f"; first rows: {first_rows(missing)}." if missing else ".")
        )
    return lines


@dataclass(frozen=True)
class StreamedRowCheck:
    """``IterableDataset.filter`` predicate: keep valid rows; log (or, strict, refuse) each invalid one."""

    split: str
    strict: bool

    def __call__(self, example: dict[str, Any]) -> bool:
        reason = example[INVALID_REASON_COLUMN]
        if not reason:
            return True
        location = f"dataset '{example[ORIGIN_DATASET_COLUMN]}' row {example[ORIGIN_ROW_COLUMN]}: {reason}"
        if self.strict:
            raise InvalidTrainingData(f"Invalid streamed {self.split} row, {location}." + STRICT_HINT)
        logger.warning_rank0(f"Dropped invalid streamed {self.split} row, {location}.")
        return False


def _is_valid(reason: str) -> bool:
    return not reason


def drop_invalid_rows(
    dataset: Union["Dataset", "IterableDataset"], data_args: "TractDataArguments", is_eval: bool
) -> Union["Dataset", "IterableDataset"]:
    """The dataset without invalid rows and without the columns the checks needed."""
    split = "evaluation" if is_eval else "training"
    if data_args.streaming:
        dataset = dataset.filter(StreamedRowCheck(split, data_args.cotraft_strict_data))
    else:
        _report(dataset, split, data_args)
        dataset = dataset.filter(
            _is_valid,
            input_columns=INVALID_REASON_COLUMN,
            num_proc=data_args.preprocessing_num_workers,
            desc=f"Dropping invalid cotraft {split} rows",
        )
    return dataset.remove_columns(BOOKKEEPING_COLUMNS)


def _report(dataset: "Dataset", split: str, data_args: "TractDataArguments") -> None:
    for line in describe_authors_rules(dataset, split, data_args):
        logger.info_rank0(line)
    strict = data_args.cotraft_strict_data
    reasons = dataset[INVALID_REASON_COLUMN]
    invalid = [index for index, reason in enumerate(reasons) if reason]
    truncated = sum(dataset[TRUNCATED_COLUMN])
    if truncated:
        logger.warning_rank0(f"{truncated} {split} prompts were shortened in the middle to fit cutoff_len.")
    if not invalid:
        logger.info_rank0(f"All {len(reasons)} {split} rows are valid cotraft examples.")
        return
    bad = dataset.select(invalid)
    origins = list(zip(bad[ORIGIN_DATASET_COLUMN], bad[ORIGIN_ROW_COLUMN], strict=True))
    message = describe_invalid_rows(origins, bad[INVALID_REASON_COLUMN], len(reasons), split)
    if strict:
        raise InvalidTrainingData(message + STRICT_HINT)
    if len(invalid) == len(reasons):
        raise InvalidTrainingData(f"No valid cotraft {split} row left: {message}")
    logger.warning_rank0(f"Dropped invalid rows: {message}")
