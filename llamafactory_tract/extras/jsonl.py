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

"""JSON files of rows: JSON Lines output (demo, D_self) and JSON-list input (benchmarks, `tract judge`)."""

import json
from pathlib import Path
from typing import Any


def write_jsonl(rows: list[dict], path: Path) -> Path:
    """Write atomically, so an interrupted run never leaves a half file that looks complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    partial.replace(path)
    return path


def parse_json_list(text: str, path: Path, error: type[Exception]) -> list[Any]:
    """The rows of a JSON file that holds a list; ``error`` names the file when it is not JSON or not a list."""
    try:
        records = json.loads(text)
    except json.JSONDecodeError as problem:
        raise error(f"{path} is not valid JSON ({problem}).") from problem
    if not isinstance(records, list):
        raise error(f"{path} must contain a JSON list of rows, got {type(records).__name__}.")
    return records
