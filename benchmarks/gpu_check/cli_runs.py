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


"""``llamafactory-cli train`` as a user runs it: a YAML file, a subprocess, its exit code, logs and losses."""

import json
import math
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass
class CliRun:
    returncode: int | None  # None: killed at its time box
    output: str
    losses: list[float] = field(default_factory=list)
    eval_metrics: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and bool(self.losses) and all(math.isfinite(loss) for loss in self.losses)

    def tail(self, chars: int = 1500) -> str:
        return self.output[-chars:]


def small_train_args(model_dir: Path, dataset_dir: Path, output_dir: Path, cuda: bool, steps: int) -> dict[str, Any]:
    """A few unshuffled ``cotraft`` steps of the small model; the parts add the option they check."""
    return {
        "model_name_or_path": str(model_dir),
        "template": "smollm2",
        "stage": "cotraft",
        "do_train": True,
        "finetuning_type": "lora",
        "lora_rank": 8,
        "lora_target": "all",
        "dataset": "judge",
        "dataset_dir": str(dataset_dir),
        "cutoff_len": 2048,
        "overwrite_cache": True,
        "output_dir": str(output_dir),
        "overwrite_output_dir": True,
        "per_device_train_batch_size": 2,
        "gradient_accumulation_steps": 1,
        "max_steps": steps,
        "learning_rate": 1.0e-4,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "disable_shuffling": True,
        "seed": 42,
        "bf16": cuda,
        "use_cpu": not cuda,
    }


def run_cli(args: dict[str, Any], work: Path, timeout_s: float, env: dict[str, str] | None = None) -> CliRun:
    """``llamafactory-cli train <yaml>`` in its own process group (killed whole at ``timeout_s``)."""
    work.mkdir(parents=True, exist_ok=True)
    config = work / "train.yaml"
    config.write_text(yaml.safe_dump(args))
    started = time.perf_counter()
    process = subprocess.Popen(
        ["llamafactory-cli", "train", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env={**os.environ, "TOKENIZERS_PARALLELISM": "false", **(env or {})},
    )
    try:
        output, _ = process.communicate(timeout=timeout_s)
        returncode: int | None = process.returncode
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        returncode = None
    print(output[-3000:], flush=True)
    log = Path(args["output_dir"]) / "trainer_log.jsonl"
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.is_file() else []
    results = Path(args["output_dir"]) / "all_results.json"
    metrics = json.loads(results.read_text()) if results.is_file() else {}
    return CliRun(
        returncode=returncode,
        output=output,
        losses=[entry["loss"] for entry in entries if entry.get("loss") is not None],
        eval_metrics={key: value for key, value in metrics.items() if key.startswith("eval_")},
        wall_s=time.perf_counter() - started,
    )
