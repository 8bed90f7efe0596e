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

"""GPU only: CoT-RAFT against SFT in bf16, full logits against the chunked loss, with and without Liger.

    pip install liger-kernel          # in the CUDA environment
    python -m benchmarks.gpu_liger    # about 5 minutes on one recent GPU; writes benchmarks/results/gpu_liger_*.json

Model: Llama-3.2-1B's shape with random weights (``benchmarks/geometry.py``), LoRA r8 on all linear
layers, micro-batch ``--batch-size`` x ``--seq-len`` tokens of judge rows, bf16. Configurations, each
in a fresh process through LLaMA-Factory's trainer, interleaved ``--repeats`` times: ``sft`` and
``sft_liger`` (LLaMA-Factory applies Liger's fused linear cross-entropy for SFT), ``cotraft`` (full
logits), ``cotraft_chunked`` and both with ``enable_liger_kernel`` (LLaMA-Factory applies Liger's
RMSNorm, RoPE and SwiGLU kernels but keeps the transformers forward for stages other than pt/sft;
the CE is then our chunked loss or the full-logit loss). Reported: median step time, peak allocated
CUDA memory, ratios to ``sft`` and to ``sft_liger``, and whether each Liger run's per-step losses
match the run without Liger (bf16 tolerance), i.e. that Liger leaves the CoT-RAFT loss unchanged.
"""

import argparse
import importlib.util
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.result_file import save_result

CONFIGS: dict[str, dict[str, Any]] = {
    "sft": {"stage": "sft"},
    "sft_liger": {"stage": "sft", "enable_liger_kernel": True},
    "cotraft": {"stage": "cotraft", "cotraft_chunked_loss": False},
    "cotraft_liger": {"stage": "cotraft", "cotraft_chunked_loss": False, "enable_liger_kernel": True},
    "cotraft_chunked": {"stage": "cotraft", "cotraft_chunked_loss": True},
    "cotraft_chunked_liger": {"stage": "cotraft", "cotraft_chunked_loss": True, "enable_liger_kernel": True},
}
LOSS_RTOL = 2e-2  # bf16 forward: Liger's kernels round differently from the eager ops


def require_gpu_and_liger() -> None:
    """Stop at once, saying why, where this script cannot measure anything."""
    import torch

    if not torch.cuda.is_available():
        raise SystemExit(
            "benchmarks.gpu_liger needs a CUDA GPU: it measures bf16 training and Liger's Triton kernels, "
            "which do not run on CPU. Run `python -m benchmarks.run` for the CPU benchmark."
        )
    if importlib.util.find_spec("liger_kernel") is None:
        raise SystemExit("benchmarks.gpu_liger needs Liger: `pip install liger-kernel` in this environment.")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--tokenizer", help="tokenizer folder (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--template", default="smollm2")
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--timeout", type=int, default=600, help="seconds per training process")
    return parser.parse_args(argv)


def summarise(runs: dict[str, list[dict[str, Any]]], warmup: int) -> dict[str, dict[str, Any]]:
    summary = {}
    for name, results in runs.items():
        summary[name] = {
            "median_step_s": statistics.median(t for r in results for t in r["step_times_s"][warmup:]),
            "cuda_peak_allocated_mib": statistics.median(r["cuda_peak_allocated_bytes"] for r in results) / 2**20,
            "losses": results[0]["losses"],
            "runs": results,
        }
    for name, stats in summary.items():
        if name.endswith("_liger"):
            reference = summary[name.removesuffix("_liger")]["losses"]
            stats["losses_match_without_liger"] = bool(reference) and all(
                abs(a - b) <= LOSS_RTOL * abs(b) for a, b in zip(stats["losses"], reference, strict=True)
            )
    return summary


def format_report(description: str, args: argparse.Namespace, summary: dict[str, dict[str, Any]]) -> str:
    lines = [
        f"model: {description}, LoRA r8 all, bf16; batch {args.batch_size} x seq {args.seq_len}; "
        f"median of {args.steps} x {args.repeats} steps after {args.warmup} warm-up",
        "",
        "| configuration | median step (s) | peak CUDA allocated (MiB) | step / sft | memory / sft "
        "| step / sft_liger | memory / sft_liger | losses match without Liger |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, stats in summary.items():
        ratios = [
            stats[key] / summary[base][key]
            for base in ("sft", "sft_liger")
            for key in ("median_step_s", "cuda_peak_allocated_mib")
        ]
        match = stats.get("losses_match_without_liger", "")
        lines.append(
            f"| {name} | {stats['median_step_s']:.3f} | {stats['cuda_peak_allocated_mib']:.0f} | "
            + " | ".join(f"{ratio:.3f}" for ratio in ratios)
            + f" | {match} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    require_gpu_and_liger()
    from benchmarks.geometry import prepare_model
    from benchmarks.judge_rows import judge_rows, write_dataset
    from benchmarks.training import measure_in_subprocess

    tokenizer_dir = args.tokenizer
    if tokenizer_dir is None:
        from llamafactory_tract.demo.smollm2 import smollm2_hf_dir

        tokenizer_dir = str(smollm2_hf_dir())
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tract_gpu_liger_") as work:
        work_dir = Path(work)
        model = prepare_model("llama3.2-1b", Path(tokenizer_dir), work_dir / "model", 0, 0, 16)
        rows = judge_rows((args.warmup + args.steps) * args.batch_size, min_prompt_chars=args.seq_len * 6)
        spec = {
            "model_dir": str(model.model_dir),
            "template": args.template,
            "dataset_dir": str(write_dataset(work_dir / "data", rows)),
            "work_dir": str(work_dir),
            "seq_len": args.seq_len,
            "batch_size": args.batch_size,
            "warmup": args.warmup,
            "steps": args.steps,
            "extra": {"bf16": True, "logging_steps": 1},
            "configs": CONFIGS,
        }
        spec_path = work_dir / "spec.json"
        spec_path.write_text(json.dumps(spec))
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in CONFIGS}
        for _ in range(args.repeats):
            for name in CONFIGS:
                runs[name].append(measure_in_subprocess(spec_path, name, args.timeout))
    summary = summarise(runs, args.warmup)
    report = format_report(model.description, args, summary)
    result = {"config": {**vars(args), "out": str(args.out)}, "model": model.description, "training": summary}
    result.update(wall_s=time.perf_counter() - started, table=report)
    save_result(args.out, "gpu_liger", result)
    return result


if __name__ == "__main__":
    main()
