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

"""TRACT performance benchmark: CoT-RAFT against plain SFT, side by side, in one run.

    python -m benchmarks.run [--out benchmarks/results] [--geometry toy|smollm2|llama3-slice] [--parts training]

Training: step time (median after warm-up) and peak memory of ``stage: sft``, ``stage: cotraft``
with full logits and ``stage: cotraft`` with the chunked loss, each in a fresh process through
LLaMA-Factory's trainer on the same model, rows, batch and sequence length. Preprocessing: rows/s
of the cotraft processor against LLaMA-Factory's supervised processor. Prints a table, writes JSON.
"""

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.geometry import GEOMETRIES, PreparedModel, prepare_model
from benchmarks.inference import measure_inference
from benchmarks.judge_rows import judge_rows, write_dataset
from benchmarks.preprocessing import measure_preprocessing
from benchmarks.result_file import save_result
from benchmarks.training import CONFIGS, measure_in_subprocess
from benchmarks.vllm_inference import measure_vllm_inference, vllm_rows

TARGETS = {"step_time": 1.03, "peak_memory": 1.05, "preprocessing": 0.8, "inference": 1.05}
PARTS = {"training", "preprocessing", "inference", "vllm"}  # vllm: not in the default --parts
MIB = 2**20


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="folder for the JSON result")
    parser.add_argument("--tokenizer", help="tokenizer folder (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--template", default="smollm2")
    parser.add_argument(
        "--geometry",
        choices=GEOMETRIES,
        default="toy",
        help="model shape (see benchmarks/geometry.py; toy: the flags below)",
    )
    parser.add_argument(
        "--parts", default="training,preprocessing,inference", help="comma-separated parts to run (default: all)"
    )
    parser.add_argument("--vocab-size", type=int, default=128256)
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--layers", type=int, default=None, help="layers of the toy (default 2) or Llama-3 slice (1)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per configuration")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per configuration and repeat")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved rounds of all configurations")
    parser.add_argument("--threads", type=int, default=0, help="torch threads in the training processes (0: default)")
    parser.add_argument("--preprocess-rows", type=int, default=160)
    parser.add_argument("--preprocess-repeats", type=int, default=5)
    parser.add_argument("--timeout", type=int, default=900, help="seconds per training process")
    parser.add_argument("--inference-prompts", type=int, default=8)
    parser.add_argument("--inference-new-tokens", type=int, default=64)
    parser.add_argument("--inference-repeats", type=int, default=3)
    parser.add_argument("--vllm-model", help="model of --parts vllm (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--vllm-rows", type=int, default=8)
    parser.add_argument("--vllm-new-tokens", type=int, default=64)
    parser.add_argument("--vllm-batch-size", type=int, default=4)
    parser.add_argument("--vllm-config", type=json.loads, default={"enforce_eager": True}, help="vLLM engine options")
    parser.add_argument("--vllm-hf-threads", type=int, default=1, help="torch threads of the transformers side")
    return parser.parse_args(argv)


def benchmark_training(args: argparse.Namespace, model_dir: Path, work_dir: Path) -> dict[str, Any]:
    rows = (args.warmup + args.steps) * args.batch_size
    # Prompts longer than seq_len characters exceed seq_len tokens: every sequence is cut to exactly seq_len.
    dataset_dir = write_dataset(work_dir / "data", judge_rows(rows, min_prompt_chars=args.seq_len * 6))
    spec = {
        "model_dir": str(model_dir),
        "template": args.template,
        "dataset_dir": str(dataset_dir),
        "work_dir": str(work_dir),
        "seq_len": args.seq_len,
        "batch_size": args.batch_size,
        "warmup": args.warmup,
        "steps": args.steps,
        "threads": args.threads,
    }
    spec_path = work_dir / "spec.json"
    spec_path.write_text(json.dumps(spec))
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in CONFIGS}
    for _ in range(args.repeats):
        for name in CONFIGS:
            runs[name].append(measure_in_subprocess(spec_path, name, args.timeout))
    summary = {}
    for name, results in runs.items():
        timed = [t for result in results for t in result["step_times_s"][args.warmup :]]
        cuda = [r["cuda_peak_allocated_bytes"] for r in results if r["cuda_peak_allocated_bytes"] is not None]
        summary[name] = {
            "median_step_s": statistics.median(timed),
            "median_step_cpu_s": statistics.median(
                t for result in results for t in result["step_cpu_times_s"][args.warmup :]
            ),
            "peak_rss_mib": statistics.median(r["peak_rss_bytes"] for r in results) / MIB,
            "rss_at_train_begin_mib": statistics.median(r["rss_at_train_begin_bytes"] for r in results) / MIB,
            "cuda_peak_allocated_mib": statistics.median(cuda) / MIB if cuda else None,
            "runs": results,
        }
    for stats in summary.values():
        stats["training_rss_increase_mib"] = stats["peak_rss_mib"] - stats["rss_at_train_begin_mib"]
    return summary


def ratio_rows(training: dict[str, Any]) -> list[tuple[str, float, float | None]]:
    """(label, measured ratio, target) for every compared configuration."""
    sft = training["sft"]
    memory_key = "cuda_peak_allocated_mib" if sft["cuda_peak_allocated_mib"] is not None else "peak_rss_mib"
    rows = []
    for name in ("cotraft", "cotraft_chunked"):
        stats = training[name]
        rows.append((f"{name}/sft step time", stats["median_step_s"] / sft["median_step_s"], TARGETS["step_time"]))
        rows.append(
            (f"{name}/sft step CPU time", stats["median_step_cpu_s"] / sft["median_step_cpu_s"], TARGETS["step_time"])
        )
        rows.append(
            (
                f"{name}/sft peak memory ({memory_key})",
                stats[memory_key] / sft[memory_key],
                TARGETS["peak_memory"] if name == "cotraft" else 1.0,
            )
        )
        rows.append(
            (
                f"{name}/sft training RSS increase",
                stats["training_rss_increase_mib"] / sft["training_rss_increase_mib"],
                None,
            )
        )
    return rows


def format_report(
    config: dict[str, Any],
    model: str,
    training: dict[str, Any] | None,
    preprocessing: dict[str, Any] | None,
    inference: dict[str, Any] | None,
) -> str:
    lines = [
        f"model: {model}, LoRA r8 all; batch {config['batch_size']} x seq {config['seq_len']}; "
        f"median of {config['steps']} x {config['repeats']} steps after {config['warmup']} warm-up",
    ]
    if training:
        lines += [
            "",
            "| configuration | median step (s) | step CPU (s) | peak RSS (MiB) | training RSS increase (MiB) |",
            "|---|---|---|---|---|",
        ]
        for name, stats in training.items():
            lines.append(
                f"| {name} | {stats['median_step_s']:.3f} | {stats['median_step_cpu_s']:.3f} "
                f"| {stats['peak_rss_mib']:.0f} | {stats['training_rss_increase_mib']:.0f} |"
            )
    lines += ["", "| ratio | measured | target |", "|---|---|---|"]
    for label, value, target in ratio_rows(training) if training else []:
        verdict = "" if target is None else f"<= {target} ({'met' if value <= target else 'MISSED'})"
        lines.append(f"| {label} | {value:.3f} | {verdict} |")
    if preprocessing:
        lines.append(preprocessing_row(preprocessing))
    if inference:
        lines += inference_rows(inference)
    return "\n".join(lines)


def preprocessing_row(preprocessing: dict[str, Any]) -> str:
    rates = preprocessing["rows_per_s"]
    ratio = preprocessing["ratio_cotraft_over_supervised"]
    met = "met" if ratio >= TARGETS["preprocessing"] else "MISSED"
    return (
        f"| cotraft/supervised processor rows/s ({rates['cotraft']:.0f} / {rates['supervised']:.0f}, "
        f"{preprocessing['rows']} rows) | {ratio:.3f} | >= {TARGETS['preprocessing']} ({met}) |"
    )


def inference_rows(inference: dict[str, Any]) -> list[str]:
    lines = []
    times, tokens = inference["median_s"], inference["forward_tokens"]
    ratio = inference["ratio_time_cot_rail_over_decode"]
    met = "met" if ratio <= TARGETS["inference"] else "MISSED"
    lines.append(
        f"| CoT-RAIL/CoT+decode time ({times['cot_rail']:.2f} / {times['cot_decode']:.2f} s, "
        f"{inference['prompts']} prompts x {inference['max_new_tokens']} new tokens) | {ratio:.3f} "
        f"| <= {TARGETS['inference']} ({met}) |"
    )
    lines.append(
        f"| CoT-RAIL/CoT+decode forward tokens ({tokens['cot_rail']} / {tokens['cot_decode']}; a second pass "
        f"over prompt + CoT would add {inference['second_pass_tokens_avoided']}) "
        f"| {inference['ratio_tokens_cot_rail_over_decode']:.3f} | |"
    )
    return lines


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    tokenizer_dir = args.tokenizer
    if tokenizer_dir is None:
        from llamafactory_tract.demo.smollm2 import smollm2_hf_dir

        tokenizer_dir = str(smollm2_hf_dir())
    if args.layers is None:
        args.layers = 1 if args.geometry == "llama3-slice" else 2
    parts = set(args.parts.split(","))
    if not parts or parts - PARTS:
        raise SystemExit(f"--parts: choose from {', '.join(sorted(PARTS))}, got {args.parts!r}")
    config = {key: value for key, value in vars(args).items() if key != "out"}
    started = time.perf_counter()
    preprocessing = training = inference = None
    if "preprocessing" in parts:
        preprocessing = measure_preprocessing(
            tokenizer_dir,
            args.template,
            judge_rows(args.preprocess_rows),
            cutoff_len=3000,
            repeats=args.preprocess_repeats,
        )
    with tempfile.TemporaryDirectory(prefix="tract_bench_") as work_dir:
        model: PreparedModel = prepare_model(
            args.geometry,
            Path(tokenizer_dir),
            Path(work_dir) / "model",
            args.vocab_size,
            args.hidden_size,
            args.layers,
        )
        if "training" in parts:
            training = benchmark_training(args, model.model_dir, Path(work_dir))
        if "inference" in parts:
            inference = measure_inference(
                str(model.model_dir),
                args.template,
                [row["instruction"] for row in judge_rows(args.inference_prompts)],
                args.inference_new_tokens,
                args.inference_repeats,
                max_prompt_len=args.seq_len,
            )
    vllm = None
    if "vllm" in parts:
        vllm = measure_vllm_inference(
            args.vllm_model or tokenizer_dir,
            args.template,
            [row["instruction"] for row in judge_rows(args.vllm_rows)],
            args.vllm_new_tokens,
            args.vllm_batch_size,
            max_prompt_len=args.seq_len,
            vllm_config=args.vllm_config,
            hf_threads=args.vllm_hf_threads,
        )
    report = format_report(config, model.description, training, preprocessing, inference)
    if vllm:
        report += "\n" + "\n".join(vllm_rows(vllm))
    result = {
        "config": config,
        "model": model.description,
        "training": training,
        "ratios": {label: value for label, value, _ in ratio_rows(training)} if training else {},
        "preprocessing": preprocessing,
        "inference": inference,
        "vllm": vllm,
        "wall_s": time.perf_counter() - started,
        "table": report,
    }
    save_result(args.out, f"benchmark_{args.geometry}", result)
    return result


if __name__ == "__main__":
    main()
