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

"""One place that saves a benchmark's result: ``<out>/<name>_<timestamp>.json``, then prints its table."""

import json
import time
from pathlib import Path
from typing import Any


def save_result(out_dir: Path, name: str, result: dict[str, Any]) -> Path:
    """Write ``result`` (with ``table`` and ``wall_s``) next to earlier runs, print the table and the path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}_{time.strftime('%Y%m%d_%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2))
    print(result["table"])
    print(f"\nwritten: {path} ({result['wall_s']:.0f} s)")
    return path
