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

"""Content fingerprints of what a run reads (models, adapters, dataset and benchmark files).

Keys built from fingerprints instead of paths change when a file is edited or an adapter retrained
in place, so stale predictions or steps are never reused. Files up to ``FULL_HASH_BYTES`` are hashed
whole; larger ones (model weights) by size plus their first and last MiB, which keeps a 14 GB seed
model at milliseconds while any retraining (new weights, new safetensors header) still shows.
What a pipeline step wrote (adapters, D_self, predictions) is hashed whole (``whole=True``): those
files are small, and a hand edit anywhere in them must show.
"""

import hashlib
import json
from pathlib import Path
from typing import Any

FULL_HASH_BYTES = 64 * 2**20
EDGE_BYTES = 2**20
SKIPPED_DIRS = ("checkpoint-",)


def digest(value: Any, length: int = 16) -> str:
    """A short sha256 of a JSON-serialisable value (keys sorted, so dict order never matters)."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def file_digest(path: Path, whole: bool = False) -> str:
    """sha256 of the file's bytes; above ``FULL_HASH_BYTES`` of its size and edges only, unless ``whole``."""
    hasher = hashlib.sha256()
    size = path.stat().st_size
    with path.open("rb") as handle:
        if whole or size <= FULL_HASH_BYTES:
            for block in iter(lambda: handle.read(2**20), b""):
                hasher.update(block)
        else:
            hasher.update(f"size={size}".encode())
            hasher.update(handle.read(EDGE_BYTES))
            handle.seek(size - EDGE_BYTES)
            hasher.update(handle.read(EDGE_BYTES))
    return hasher.hexdigest()[:16]


def fingerprint_path(value: str | Path | None) -> str | None:
    """``file:``/``dir:`` content digest of a local path; ``name:`` for a hub id (or a path absent here)."""
    if value is None:
        return None
    path = Path(value).expanduser()
    if path.is_file():
        return f"file:{file_digest(path)}"
    if path.is_dir():
        files = sorted(
            item
            for item in path.rglob("*")
            if item.is_file()
            and not any(part.startswith(".") or part.startswith(SKIPPED_DIRS) for part in item.relative_to(path).parts)
        )
        return "dir:" + digest([(str(item.relative_to(path)), file_digest(item)) for item in files])
    return f"name:{value}"
