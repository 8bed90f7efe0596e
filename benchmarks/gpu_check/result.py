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


"""What one part of the device check reports: passed, failed or skipped, with the reason and its figures."""

import argparse
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Status = Literal["passed", "failed", "skipped"]


@dataclass
class Check:
    """One comparison: ``value`` against ``tolerance`` (or a plain yes/no when ``tolerance`` is None)."""

    name: str
    passed: bool
    value: Any = None
    tolerance: Any = None


@dataclass
class PartResult:
    part: str
    status: Status = "passed"
    reason: str | None = None
    checks: list[Check] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def check(self, name: str, passed: bool, value: Any = None, tolerance: Any = None) -> bool:
        """Record one comparison; a failed one fails the part."""
        self.checks.append(Check(name, bool(passed), value, tolerance))
        if not passed:
            self.status = "failed"
            self.reason = self.reason or f"{name}: {value} (tolerance {tolerance})"
        return bool(passed)

    def skip(self, reason: str) -> "PartResult":
        self.status, self.reason = "skipped", reason
        return self

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=1, default=str))


def part_arguments(description: str) -> argparse.ArgumentParser:
    """The arguments every part takes (``run`` passes them all)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes and few steps: the CPU dry run")
    parser.add_argument("--assets", type=Path, required=True, help="folder written by `gpu_check.sh prepare`")
    parser.add_argument("--out", type=Path, required=True, help="the part's JSON result")
    parser.add_argument("--box-s", type=float, default=600.0, help="the part's time box: it plans its work within")
    return parser
