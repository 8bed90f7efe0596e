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

"""Check a ``cotraft`` run's local dataset files against dataset_info.json before LLaMA-Factory loads them.

What ``datasets`` reports for a bad file is a library traceback without the file or column: a column
named in dataset_info.json that the file lacks (``KeyError: 'outptu'`` in the converter), a file that
is not UTF-8 or whose column mixes numbers and strings (``DatasetGenerationError``), an empty file
(``Instruction "train" corresponds to no data!``). Here every local JSON/JSONL/CSV file of the run is
read once at start-up (a full parse, as ``datasets`` does for a JSON list) and the first problem stops
the run with the file, row or column, and what to change. Hub datasets are left to ``datasets``.
"""

import csv
import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llamafactory_tract.extras.errors import TractUserError
from llamafactory_tract.extras.text_files import read_utf8

if TYPE_CHECKING:
    from llamafactory.data.parser import DatasetAttr

DATASET_INFO = "dataset_info.json"
ALPACA_COLUMNS = ("prompt", "query", "response", "history")
SHAREGPT_COLUMNS = ("messages",)
COMMON_COLUMNS = ("system", "tools", "images", "videos", "audios", "kto_tag")
RANKING_COLUMNS = ("chosen", "rejected")
SCORE_COLUMN = "score"  # ours, read by the converter graft (patches/)


def check_dataset_files(dataset_names: list[str] | None, dataset_dir: str) -> None:
    """Raise ``TractUserError`` for the first local dataset file that ``datasets`` could not load as configured."""
    if not dataset_names or dataset_dir == "ONLINE" or dataset_dir.startswith("REMOTE:"):
        return
    info_path = Path(dataset_dir) / DATASET_INFO
    for name, attr in zip(dataset_names, _dataset_attrs(dataset_names, dataset_dir, info_path), strict=True):
        if attr.load_from == "file":
            _check_local_dataset(name, attr, Path(dataset_dir), info_path)


def _dataset_attrs(names: list[str], dataset_dir: str, info_path: Path) -> list["DatasetAttr"]:
    """LLaMA-Factory's reading of dataset_info.json, after checking the file and the names it must define."""
    from llamafactory.data.parser import get_dataset_list

    if not info_path.is_file():
        raise TractUserError(
            f"`dataset_dir: {dataset_dir}` has no {DATASET_INFO} ({info_path} does not exist): point `dataset_dir` "
            f"at the folder whose {DATASET_INFO} defines {', '.join(names)}."
        )
    try:
        info = json.loads(read_utf8(info_path))
    except json.JSONDecodeError as error:
        raise TractUserError(f"{info_path} is not valid JSON: {error}.") from None
    undefined = [name for name in names if name not in info]
    if undefined:
        raise TractUserError(
            f"`dataset`: {', '.join(undefined)} not defined in {info_path} (it defines: {', '.join(info) or 'none'})."
        )
    return get_dataset_list(names, dataset_dir)


def _check_local_dataset(name: str, attr: "DatasetAttr", dataset_dir: Path, info_path: Path) -> None:
    local = dataset_dir / attr.dataset_name
    if local.is_dir():
        files = sorted(path for path in local.iterdir() if path.is_file())
    elif local.is_file():
        files = [local]
    else:
        raise TractUserError(
            f"{info_path}: dataset '{name}' has `file_name: {attr.dataset_name}`, but {local} does not exist."
        )
    columns = _named_columns(attr)
    rows = 0
    for path in files:
        kind = path.suffix.lstrip(".").lower()
        if kind in ("json", "jsonl"):
            rows += _check_rows(path, _json_records(path), columns, name, attr.dataset_name, info_path)
        elif kind == "csv":
            rows += _check_rows(path, _csv_records(path), columns, name, attr.dataset_name, info_path)
        elif kind == "txt":
            read_utf8(path)
            rows += 1
        else:  # parquet and arrow files carry their own schema; left to datasets
            rows += 1
    if rows == 0:
        where = local if local.is_file() else f"{local} ({len(files)} files)"
        raise TractUserError(
            f"{where} (dataset '{name}') has no rows: add training rows, or remove '{name}' from `dataset` / "
            "`eval_dataset`."
        )


def _named_columns(attr: "DatasetAttr") -> dict[str, str]:
    """``columns.<key>`` of dataset_info.json -> the column it names, for the keys LLaMA-Factory reads."""
    keys = ALPACA_COLUMNS + (SCORE_COLUMN,) if attr.formatting == "alpaca" else SHAREGPT_COLUMNS
    keys += COMMON_COLUMNS + (RANKING_COLUMNS if attr.ranking else ())
    return {key: getattr(attr, key) for key in keys if getattr(attr, key, None)}


def _json_records(path: Path) -> list[Any]:
    """A JSON list, or JSON Lines (what ``datasets``' json builder reads); syntax errors name the line."""
    text = read_utf8(path)
    if text.lstrip().startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise TractUserError(f"{path} is not valid JSON: {error}. Fix the file.") from None
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise TractUserError(
                    f"{path}: line {number} is not valid JSON ({error}); a .json file holds a JSON list of rows "
                    "or one JSON object per line."
                ) from None
    return records


def _csv_records(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(read_utf8(path), newline="")))


def _check_rows(
    path: Path, records: list[Any], columns: dict[str, str], name: str, file_name: str, info_path: Path
) -> int:
    """The rows are objects, every column dataset_info.json names exists, and no column mixes value types."""
    if not records:
        return 0
    kinds: dict[str, dict[str, int]] = {}  # column -> JSON kind -> first row holding it
    present: set[str] = set()
    for row, record in enumerate(records):
        if not isinstance(record, dict):
            raise TractUserError(
                f"{path}: row {row} (0-based) is {_kind(record)}, not an object of columns; every row of dataset "
                f"'{name}' must be a JSON object."
            )
        present.update(record)
        for column, value in record.items():
            if value is not None:
                kinds.setdefault(column, {}).setdefault(_kind(value), row)
    for key, column in columns.items():
        if column not in present:
            raise TractUserError(
                f"Dataset '{file_name}' ('{name}' in {info_path}): `columns.{key}` names the {key} column "
                f"'{column}', which is not in the data ({path} has: {', '.join(sorted(present))}). Fix the name in "
                f"{DATASET_INFO}."
            )
    for column, found in kinds.items():
        if len(found) > 1:
            fix = 'a number (3, not "3")' if "a number" in found else "the same type"
            raise TractUserError(
                f"{path}: column '{column}' mixes {_describe_kinds(found.items())}, and datasets loads a column "
                f"of one type only: write every '{column}' value as {fix}."
            )
    return len(records)


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object" if isinstance(value, dict) else type(value).__name__


def _describe_kinds(found: Iterable[tuple[str, int]]) -> str:
    ordered = sorted(found, key=lambda kind_row: kind_row[1])
    return " and ".join(f"{kind} (first at row {row})" for kind, row in ordered) + " (rows counted from 0)"
