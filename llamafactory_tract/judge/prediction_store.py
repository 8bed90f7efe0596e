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

"""Per-sample predictions as JSON lines, appended and flushed per batch so an interrupted run resumes.

A record belongs to (config hash, benchmark or dataset, row, input hash): the config hash covers
every setting and the model/adapter content, the input hash the row's own content (prompt and, for
benchmarks, label). A resumed run skips only what it already predicted for exactly that; records of
other settings or of since-edited rows are ignored (and counted), never reused. Sampling depends
only on the seed, the row and the draw, so a row re-predicted after an interruption (or a line cut
short by one, which is skipped with a warning) comes out the same.
"""

import json
from pathlib import Path
from typing import Any

from llamafactory_tract.extras.fingerprint import digest
from llamafactory_tract.extras.logging import get_logger
from llamafactory_tract.extras.paths import check_creatable_dir

logger = get_logger(__name__)

RecordKey = tuple[str, int, str]


def input_hash(content: Any) -> str:
    """Digest of what a row feeds the judge (and, for benchmarks, the label it is scored against)."""
    return digest(content)


class PredictionStore:
    def __init__(self, path: Path, config_hash: str) -> None:
        """A store is opened before the model loads: a folder it could not be written in is refused now."""
        check_creatable_dir(path.parent)
        self.path = path
        self.config_hash = config_hash

    def load(self) -> dict[RecordKey, dict[str, Any]]:
        """Records of this configuration by (benchmark, row, input hash); later lines win."""
        records: dict[RecordKey, dict[str, Any]] = {}
        if not self.path.is_file():
            return records
        foreign, broken = 0, []
        for number, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                key = (record["benchmark"], int(record["row"]), str(record["input_hash"]))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                broken.append(number)
                continue
            if record.get("config_hash") != self.config_hash:
                foreign += 1
                continue
            records[key] = record
        if broken:
            logger.warning_rank0(f"{self.path}: skipped unreadable line(s) {broken[:10]} (an interrupted write?).")
        if foreign:
            logger.warning_rank0(
                f"{self.path}: ignored {foreign} predictions made with a different configuration "
                f"(this run's config hash is {self.config_hash})."
            )
        return records

    def append(self, records: list[dict[str, Any]]) -> None:
        """Append records (each with ``benchmark``, ``row`` and ``input_hash``), flushed to disk."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        cut_short = self.path.is_file() and self.path.stat().st_size > 0 and not self._ends_with_newline()
        with self.path.open("a", encoding="utf-8") as handle:
            if cut_short:
                handle.write("\n")
            for record in records:
                handle.write(json.dumps({**record, "config_hash": self.config_hash}, ensure_ascii=False) + "\n")
            handle.flush()

    def _ends_with_newline(self) -> bool:
        with self.path.open("rb") as handle:
            handle.seek(-1, 2)
            return handle.read(1) == b"\n"
