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


"""Runs every part of the device check, each in its own process and time box, into one JSON report.

A part that overruns its box is killed with its whole process group and reported ``failed`` (timed out);
the parts after it still get their boxes (or what is left of ``--budget-s``), so one slow part cannot
starve the rest.
"""

import argparse
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.gpu_check.result import PartResult

# (module, time box in seconds on an H200). The boxes add up to the default budget.
PARTS: tuple[tuple[str, int], ...] = (
    ("correctness", 45),
    ("training_cli", 115),
    ("geometry", 230),
    ("deepspeed_zero", 130),
)
DEFAULT_BUDGET_S = 520
TINY_BUDGET_S = 900  # the CPU dry run: everything is slower on 2 cores
VERSIONS = (
    "torch",
    "transformers",
    "llamafactory",
    "peft",
    "trl",
    "datasets",
    "accelerate",
    "liger-kernel",
    "deepspeed",
)


def environment() -> dict[str, Any]:
    import torch

    versions = {}
    for name in VERSIONS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu"
    import llamafactory
    import transformers

    return {
        "python": platform.python_version(),
        "device": device,
        "cuda": torch.version.cuda,
        "versions": versions,
        # where the carried wheels landed, and where the machine's own torch is
        "paths": {module.__name__: module.__file__ for module in (llamafactory, transformers, torch)},
    }


def run_part(module: str, box_s: float, common: list[str], work: Path) -> dict[str, Any]:
    """One part in a fresh process group; its JSON, or a failed result saying why there is none."""
    out = work / f"{module}.json"
    command = [
        sys.executable,
        "-m",
        f"benchmarks.gpu_check.{module}",
        *common,
        "--out",
        str(out),
        "--box-s",
        str(box_s),
    ]
    print(f"\n[gpu_check] ===== {module} (time box {box_s:.0f} s) =====", flush=True)
    started = time.perf_counter()
    process = subprocess.Popen(command, start_new_session=True)
    try:
        returncode = process.wait(timeout=box_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        returncode = None
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    wall_s = time.perf_counter() - started
    if out.is_file():
        result = json.loads(out.read_text())
    else:
        result = vars(PartResult(module))
        result["status"] = "failed"
        result["reason"] = "timed out" if returncode is None else f"exited {returncode} without a result"
    if returncode is None and result["status"] == "passed":
        result.update(status="failed", reason=f"timed out after {box_s:.0f} s")
    result["wall_s"] = round(wall_s, 1)
    return result


def summary_table(results: list[dict[str, Any]]) -> str:
    lines = ["| part | status | wall (s) | reason |", "|---|---|---|---|"]
    for result in results:
        lines.append(f"| {result['part']} | {result['status']} | {result['wall_s']} | {result.get('reason') or ''} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--assets", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--budget-s", type=float, default=None)
    parser.add_argument("--parts", nargs="*", default=[name for name, _ in PARTS])
    args = parser.parse_args(argv)
    budget = args.budget_s or (TINY_BUDGET_S if args.tiny else DEFAULT_BUDGET_S)
    scale = budget / DEFAULT_BUDGET_S if args.tiny else 1.0  # the dry run stretches every box alike
    work = args.out / "parts"
    work.mkdir(parents=True, exist_ok=True)
    common = ["--device", args.device, "--assets", str(args.assets)] + (["--tiny"] if args.tiny else [])
    report: dict[str, Any] = {"environment": environment(), "device_arg": args.device, "tiny": args.tiny}
    deadline = time.monotonic() + budget
    results = []
    for module, box in PARTS:
        if module not in args.parts:
            continue
        left = deadline - time.monotonic()
        if left < 5:
            results.append({**vars(PartResult(module).skip("the run's budget was spent")), "wall_s": 0.0})
            continue
        results.append(run_part(module, min(box * scale, left), common, work))
    report["parts"] = results
    report["table"] = summary_table(results)
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))
    shutil.rmtree(work)  # folded into gpu_check.json: a device call returns few files
    print("\n[gpu_check] environment: " + json.dumps(report["environment"]))
    print(report["table"])
    return 0 if all(result["status"] != "failed" for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
