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

"""Step keys: a pipeline output belongs to the configuration and the inputs that produced it.

Every step (stage 1, D_self, stage 2, evaluation) has a key made of its own resolved configuration
(minus paths and output-only settings) and the fingerprints of what it reads: the seed model, the
datasets or benchmark files by content, and an upstream step by that step's key. The key, the run
id of the attempt and the run ids of the upstream outputs it consumed are recorded beside the output
(``<output>.step.json``), so a step is reused only when all of them still match. The record also
holds a content digest of each file the step produced that later steps or reports read (adapter,
D_self, predictions and metrics): an output edited or retrained in place outside the pipeline no
longer matches it, so the step is not trusted just because it once wrote there.
"""

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from llamafactory_tract.extras.fingerprint import digest, file_digest, fingerprint_path

RECORD_SUFFIX = ".step.json"
OutputChangeKind = Literal["modified", "removed", "added"]
OUTPUT_CHANGE_WORDS: dict[OutputChangeKind, str] = {
    "modified": "changed",
    "removed": "was removed",
    "added": "appeared",
}


@dataclass
class StepRecord:
    step: str
    key: str
    run_id: str
    state: Literal["running", "complete"]
    config: dict[str, Any]
    inputs: dict[str, str]
    upstream_runs: dict[str, str] = field(default_factory=dict)
    """Run id of every upstream output this attempt read: a rerun upstream step invalidates this one."""
    command: list[str] = field(default_factory=list)
    pid: int | None = None
    started: str = ""
    finished: str | None = None
    outputs: dict[str, str] | None = None
    """Content digest of each output file (by its path relative to the step's output folder), taken when
    the step completed; None while it runs and in records written before outputs were fingerprinted."""


@dataclass(frozen=True)
class OutputChange:
    """An output file that is no longer what the step wrote (edited, retrained in place, removed or added)."""

    path: Path
    kind: OutputChangeKind

    def __str__(self) -> str:
        return f"{self.path} {OUTPUT_CHANGE_WORDS[self.kind]} since the step wrote it"


def step_key(kind: str, config: dict[str, Any], inputs: dict[str, str]) -> str:
    return digest({"kind": kind, "config": config, "inputs": inputs})


def record_path(output: Path) -> Path:
    return output.with_name(output.name + RECORD_SUFFIX)


def read_record(output: Path) -> StepRecord | None:
    """The record beside ``output``; None if there is none (an unreadable one counts as none)."""
    path = record_path(output)
    try:
        return StepRecord(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def write_record(output: Path, record: StepRecord) -> None:
    """Atomically (write then rename), so a crash never leaves half a record."""
    path = record_path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(asdict(record), indent=2, default=str) + "\n")
    os.replace(partial, path)


def now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """``key: old -> new`` for every dotted key whose value differs (nested mappings are walked)."""
    changes = []
    for key in sorted(set(old) | set(new), key=str):
        before, after = old.get(key, "<unset>"), new.get(key, "<unset>")
        if isinstance(before, dict) and isinstance(after, dict):
            changes += differences(before, after, f"{prefix}{key}.")
        elif before != after:
            changes.append(f"{prefix}{key}: {before!r} -> {after!r}")
    return changes


def dataset_fingerprints(datasets: str | list[str] | None, dataset_dir: str | None) -> dict[str, str]:
    """``dataset:<name>`` -> its ``dataset_info.json`` entry plus the content of its local file (or folder).

    Hub datasets are identified by their entry (repository id, revision, columns); names missing from
    the info file are left for LLaMA-Factory to report.
    """
    names = [name.strip() for name in datasets.split(",")] if isinstance(datasets, str) else list(datasets or [])
    info_path = Path(dataset_dir or "data") / "dataset_info.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    result = {}
    for name in names:
        entry = info.get(name)
        if entry is None:
            result[f"dataset:{name}"] = f"unregistered:{name}"
            continue
        local = fingerprint_path(info_path.parent / entry["file_name"]) if "file_name" in entry else None
        result[f"dataset:{name}"] = digest({"entry": entry, "content": local})
    return result


def output_digests(folder: Path, names: list[str]) -> dict[str, str]:
    """Whole-file digests of the files ``names`` (relative to ``folder``) that exist."""
    return {name: file_digest(folder / name, whole=True) for name in names if (folder / name).is_file()}


def output_changes(recorded: dict[str, str], current: dict[str, str], folder: Path) -> list[OutputChange]:
    """Every file whose digest differs between the record and now, or that only one of them has."""
    changes = []
    for name in sorted(set(recorded) | set(current)):
        if name not in current:
            changes.append(OutputChange(folder / name, "removed"))
        elif name not in recorded:
            changes.append(OutputChange(folder / name, "added"))
        elif recorded[name] != current[name]:
            changes.append(OutputChange(folder / name, "modified"))
    return changes
