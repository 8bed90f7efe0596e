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


"""Part c: the paper's geometry on one GPU: step time, tokens/s, peak memory and MFU per configuration.

Llama-3-8B and Mistral-7B shapes (all 32 layers, random bf16 weights drawn on the GPU), LoRA r8 on all
linear layers, ``cutoff_len`` 3000 with rows cut to exactly 3000 tokens (pre-tokenised by ``prepare``),
the recipes' micro-batch of 1, gradient checkpointing on (LLaMA-Factory's default), SDPA. Configurations:
``sft``, ``cotraft`` with full logits, ``cotraft`` chunked (the default), and chunked with Liger; each in
a fresh process through LLaMA-Factory's trainer (``benchmarks.training``), interleaved shape by shape.

Model FLOPs per token count the frozen base's matmuls forward and their input gradients backward
(2 x forward) and causal attention forward and backward (3 x forward); LoRA's own FLOPs and the
recomputation of gradient checkpointing are not counted. MFU is against the H200's dense bf16 peak.
"""

import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.gpu_check.models import PAPER_SHAPES, shape_description, write_config_only
from benchmarks.gpu_check.result import PartResult, part_arguments

H200_BF16_DENSE_FLOPS = 989.5e12  # NVIDIA H200 SXM datasheet: 1,979 TFLOP/s bf16 with sparsity, half dense
SEQ_LEN = 3000
CONFIGS: dict[str, dict[str, Any]] = {
    "sft": {"stage": "sft"},
    "cotraft": {"stage": "cotraft", "cotraft_chunked_loss": False},
    "cotraft_chunked": {"stage": "cotraft", "cotraft_chunked_loss": True},
    "cotraft_chunked_liger": {"stage": "cotraft", "cotraft_chunked_loss": True, "enable_liger_kernel": True},
}


def training_flops_per_token(shape: dict[str, Any], seq_len: int) -> float:
    """Model FLOPs of one LoRA training token at ``seq_len`` (see the module docstring)."""
    hidden, layers = shape["hidden_size"], shape["num_hidden_layers"]
    kv_width = hidden * shape["num_key_value_heads"] // shape["num_attention_heads"]
    layer_weights = hidden * (2 * hidden + 2 * kv_width) + 3 * hidden * shape["intermediate_size"]
    linear_forward = 2 * (layers * layer_weights + hidden * shape["vocab_size"])
    attention_forward = 2 * layers * seq_len * hidden  # causal: QK^T and AV over seq_len / 2 positions on average
    return 2 * linear_forward + 3 * attention_forward


# The dry run's share of the matrix: each stage and loss path once, each shape family once.
TINY_CONFIGS = {"llama3-8b": ("sft", "cotraft_chunked"), "mistral-7b": ("cotraft",)}


def configurations(shape_name: str, cuda: bool, tiny: bool) -> dict[str, dict[str, Any]]:
    liger = cuda and importlib.util.find_spec("liger_kernel") is not None
    return {
        name: config
        for name, config in CONFIGS.items()
        if (liger or not config.get("enable_liger_kernel")) and (not tiny or name in TINY_CONFIGS[shape_name])
    }


def measure(spec_path: Path, name: str, timeout_s: float) -> dict[str, Any]:
    """One configuration in a fresh process; its figures, or the error tail."""
    out = spec_path.parent / f"result_{spec_path.stem}_{name}.json"
    command = [sys.executable, "-m", "benchmarks.gpu_check.random_init_training", str(spec_path), name, str(out)]
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s:.0f} s"}
    if completed.returncode != 0 or not out.is_file():
        return {"error": (completed.stdout[-1500:] + completed.stderr[-3000:]).strip()}
    return json.loads(out.read_text())


def summarise(run: dict[str, Any], warmup: int, flops_per_token: float, tokens_per_step: int) -> dict[str, Any]:
    step = statistics.median(run["step_times_s"][warmup:])
    return {
        "median_step_s": round(step, 4),
        "tokens_per_s": round(tokens_per_step / step, 1),
        "peak_cuda_allocated_mib": round(run["cuda_peak_allocated_bytes"] / 2**20)
        if run["cuda_peak_allocated_bytes"]
        else None,
        "mfu": round(flops_per_token * tokens_per_step / step / H200_BF16_DENSE_FLOPS, 4),
        "losses": run["losses"],
    }


def main(argv: list[str] | None = None) -> None:
    args = part_arguments(__doc__).parse_args(argv)
    result = PartResult("geometry")
    import torch

    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        result.skip("no CUDA device").write(args.out)
        return
    warmup, steps = (1, 1) if args.tiny else (1, 3)
    deadline = time.monotonic() + args.box_s - 5  # room to write the result
    if not (cuda and importlib.util.find_spec("liger_kernel")):
        result.figures["not_run"] = "cotraft_chunked_liger: Liger needs a GPU and liger-kernel"
    with tempfile.TemporaryDirectory(prefix="gpu_check_geometry_") as tmp:
        work = Path(tmp)
        for shape_name, shape in PAPER_SHAPES.items():
            configs = configurations(shape_name, cuda, args.tiny)
            model_dir = write_config_only(args.assets / "tokenizer", work / shape_name, shape, args.tiny)
            used_shape = json.loads((model_dir / "config.json").read_text())
            spec = {
                "model_dir": str(model_dir),
                "template": "smollm2",
                "dataset_dir": str(args.assets / "data" / "long"),
                "work_dir": str(work),
                "seq_len": SEQ_LEN,
                "batch_size": 1,
                "warmup": warmup,
                "steps": steps,
                "extra": {"train_from_scratch": True, "flash_attn": "sdpa", "logging_steps": 1},
                "configs": {
                    name: {**config, "tokenized_path": str(args.assets / "tokenized" / config["stage"])}
                    for name, config in configs.items()
                },
            }
            spec_path = work / f"{shape_name}.json"
            spec_path.write_text(json.dumps(spec))
            flops = training_flops_per_token(used_shape, SEQ_LEN)
            figures: dict[str, Any] = {"shape": shape_description(shape_name, args.tiny), "flops_per_token": flops}
            for name in configs:
                left = deadline - time.monotonic()
                if left < 15:
                    figures[name] = {"error": "not run: the part's time box was spent"}
                    result.check(f"{shape_name} {name}: ran", False, value="time box spent")
                    continue
                run = measure(spec_path, name, left)
                ok = "error" not in run
                figures[name] = summarise(run, warmup, flops, SEQ_LEN) if ok else run
                result.check(f"{shape_name} {name}: ran", ok, value=None if ok else run["error"][-600:])
            add_ratios(figures, configs)
            result.figures[shape_name] = figures
            print(f"[geometry] {shape_name}: " + json.dumps(figures), flush=True)
    result.write(args.out)


def add_ratios(figures: dict[str, Any], configs: dict[str, Any]) -> None:
    """Step time and peak memory of each configuration over ``sft``'s, measured in the same run."""
    base = figures.get("sft", {})
    for name in configs:
        stats = figures.get(name, {})
        if "median_step_s" not in stats or "median_step_s" not in base:
            continue
        stats["step_over_sft"] = round(stats["median_step_s"] / base["median_step_s"], 3)
        if stats["peak_cuda_allocated_mib"] and base["peak_cuda_allocated_mib"]:
            stats["memory_over_sft"] = round(stats["peak_cuda_allocated_mib"] / base["peak_cuda_allocated_mib"], 3)


if __name__ == "__main__":
    main()
