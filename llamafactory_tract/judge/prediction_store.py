"""Per-sample predictions as JSON lines, appended and flushed per batch so an interrupted run resumes.

A record is keyed by (benchmark, row, config hash): a resumed run skips what it already predicted
with the same settings, and predictions made with other settings are ignored (and counted), never
silently reused. A line cut short by an interruption is skipped with a warning.
"""

import json
from pathlib import Path
from typing import Any

from llamafactory_tract.extras.logging import get_logger

logger = get_logger(__name__)


class PredictionStore:
    def __init__(self, path: Path, config_hash: str) -> None:
        self.path = path
        self.config_hash = config_hash

    def load(self) -> dict[tuple[str, int], dict[str, Any]]:
        """Records of this configuration by (benchmark, row); later lines win."""
        records: dict[tuple[str, int], dict[str, Any]] = {}
        if not self.path.is_file():
            return records
        foreign, broken = 0, []
        for number, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                key = (record["benchmark"], int(record["row"]))
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
