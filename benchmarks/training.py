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

"""Training step time and peak memory of one configuration, in a fresh process.

    python -m benchmarks.training SPEC NAME OUT

Each configuration runs in its own process so that peak RSS is its own. Steps are timed by a
TrainerCallback inside LLaMA-Factory's trainer (``run_exp``), from on_step_begin to on_step_end,
in wall-clock time and in the process's CPU time: on a machine shared with other work, wall time
grows with whatever else runs, while the CPU time of a single-threaded run (``threads: 1``) counts
the step's own work.
"""

import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CONFIGS: dict[str, dict[str, Any]] = {
    "sft": {"stage": "sft"},
    "cotraft": {"stage": "cotraft", "cotraft_chunked_loss": False},
    "cotraft_chunked": {"stage": "cotraft", "cotraft_chunked_loss": True},
}


def train_args(spec: dict[str, Any], name: str, output_dir: Path) -> dict[str, Any]:
    import torch

    args = {
        "model_name_or_path": spec["model_dir"],
        "template": spec["template"],
        "do_train": True,
        "finetuning_type": "lora",
        "lora_rank": 8,
        "lora_target": "all",
        "dataset": "judge",
        "dataset_dir": spec["dataset_dir"],
        "cutoff_len": spec["seq_len"],
        "overwrite_cache": True,
        "output_dir": str(output_dir),
        "overwrite_output_dir": True,
        "report_to": "none",
        "per_device_train_batch_size": spec["batch_size"],
        "gradient_accumulation_steps": 1,
        "max_steps": spec["warmup"] + spec["steps"],
        "learning_rate": 1.0e-5,
        "logging_steps": 1000,
        "save_strategy": "no",
        "disable_shuffling": True,
        "bf16": torch.cuda.is_available(),
        **spec.get("extra", {}),
        **(spec["configs"][name] if "configs" in spec else CONFIGS[name]),
    }
    if args["stage"] == "cotraft":  # the benchmark's over-long prompts are cut to exactly cutoff_len
        args.setdefault("cotraft_min_prompt_share", 0.0)
    return args


def batch_tokens(dataloader: Any) -> list[tuple[int, int]]:
    """(real tokens, tokens fed) of each batch, in the order an unshuffled trainer feeds them.

    Real tokens are the positions of judge rows: with ``neat_packing`` LLaMA-Factory's collator has
    turned the mask into a 4D block-diagonal one, where a padding position attends to nothing.
    """
    counts = []
    for batch in dataloader:
        mask = batch["attention_mask"]
        real = mask.ne(0).sum() if mask.dim() == 2 else mask[:, 0].amax(dim=-1).eq(0).sum()
        counts.append((int(real), batch["input_ids"].numel()))
    return counts


def run_configuration(spec: dict[str, Any], name: str) -> dict[str, Any]:
    """Train ``warmup + steps`` steps; return step times, peak RSS and (on GPU) peak allocated memory."""
    import torch
    from llamafactory.train.tuner import run_exp
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.cpu_times: list[float] = []
            self.rss_at_train_begin = 0

        def _sync(self) -> None:
            if torch.cuda.is_available():
                torch.cuda.synchronize()

        def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
            self.batches = batch_tokens(train_dataloader) if spec.get("count_tokens") else None
            self.rss_at_train_begin = current_rss_bytes()
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()

        def on_step_begin(self, args, state, control, **kwargs):
            self._sync()
            self.start, self.cpu_start = time.perf_counter(), time.process_time()

        def on_step_end(self, args, state, control, **kwargs):
            self._sync()
            self.times.append(time.perf_counter() - self.start)
            self.cpu_times.append(time.process_time() - self.cpu_start)

    timer = StepTimer()
    output_dir = Path(spec["work_dir"]) / f"out_{name}"
    run_exp(train_args(spec, name, output_dir), callbacks=[timer])
    return {
        "step_times_s": timer.times,
        "step_cpu_times_s": timer.cpu_times,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "rss_at_train_begin_bytes": timer.rss_at_train_begin,
        "cuda_peak_allocated_bytes": torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None,
        "batch_tokens": timer.batches,
        "losses": logged_losses(output_dir / "trainer_log.jsonl"),
    }


def logged_losses(log_path: Path) -> list[float]:
    """The training losses LLaMA-Factory logged (one per ``logging_steps``)."""
    if not log_path.is_file():
        return []
    entries = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    return [entry["loss"] for entry in entries if "loss" in entry]


def current_rss_bytes() -> int:
    import os

    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure_in_subprocess(spec_path: Path, name: str, timeout: int) -> dict[str, Any]:
    """Run configuration ``name`` (a key of CONFIGS or of the spec's ``configs``) in a fresh process."""
    out = spec_path.parent / f"result_{name}.json"
    command = [sys.executable, "-m", "benchmarks.training", str(spec_path), name, str(out)]
    repo_root = Path(__file__).resolve().parents[1]
    result = subprocess.run(command, cwd=repo_root, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return json.loads(out.read_text())


if __name__ == "__main__":
    spec_file, config_name, out_file = sys.argv[1:4]
    run_spec = json.loads(Path(spec_file).read_text())
    if run_spec.get("threads"):
        import torch

        torch.set_num_threads(run_spec["threads"])
    Path(out_file).write_text(json.dumps(run_configuration(run_spec, config_name)))
