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

"""Throughput and padding of ``stage: cotraft`` with and without ``neat_packing``, on real judge rows.

    python -m benchmarks.packing --data PATH [--data PATH ...] [--rows 128] [--batch-size 8] [--cutoff-len 3000]

PATH is a Prometheus evaluation file (``vicuna_eval.json``, ``mt_bench_eval.json``: prompt, GPT-4
feedback, score); its first feedback per row becomes a judge row, files interleaved, so the lengths
are those of real judge prompts and CoTs. Each configuration trains one epoch over the same rows
(micro-batch ``--batch-size``, no shuffling) in a fresh process through LLaMA-Factory's trainer,
interleaved ``--repeats`` times, with one torch thread. Reported: the share of fed positions that are
padding, and judge-row tokens per second of the training process's CPU time and of wall time (steps
after the first), i.e. useful work per second; on a machine shared with other work, the CPU-time rate
is the one that does not depend on what else runs.
"""

import argparse
import json
import statistics
import tempfile
import time
from itertools import chain, zip_longest
from pathlib import Path
from typing import Any

from benchmarks.geometry import GEOMETRIES, prepare_model
from benchmarks.judge_rows import write_dataset
from benchmarks.result_file import save_result
from benchmarks.training import measure_in_subprocess

CONFIGS = {
    "unpacked": {"stage": "cotraft"},
    "neat_packing": {"stage": "cotraft", "neat_packing": True},
}
ONE_EPOCH = {"max_steps": -1, "num_train_epochs": 1}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, action="append", required=True, help="Prometheus-format JSON file")
    parser.add_argument("--rows", type=int, default=128, help="judge rows trained on (one epoch)")
    parser.add_argument("--batch-size", type=int, default=8, help="micro-batch (the authors' Mistral recipe: 8)")
    parser.add_argument("--cutoff-len", type=int, default=3000, help="the paper recipes' cutoff_len")
    parser.add_argument("--geometry", choices=GEOMETRIES, default="toy")
    parser.add_argument("--tokenizer", help="tokenizer folder (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--template", default="smollm2")
    parser.add_argument("--vocab-size", type=int, default=128256, help="toy geometry")
    parser.add_argument("--hidden-size", type=int, default=64, help="toy geometry")
    parser.add_argument("--layers", type=int, default=None, help="toy (default 2) or Llama-3 slice (default 1)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per training process")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    return parser.parse_args(argv)


def prometheus_rows(paths: list[Path], count: int) -> list[dict[str, str]]:
    """``count`` judge rows in alpaca layout, taken from the files in turn."""
    from llamafactory_tract.data.prometheus import annotation_rows
    from llamafactory_tract.data.score_format import ScoreFormat

    score_format = ScoreFormat()
    per_file = [annotation_rows(path, score_format) for path in paths]
    rows = [row for row in chain.from_iterable(zip_longest(*per_file)) if row is not None][:count]
    if len(rows) < count:
        raise SystemExit(f"--rows {count}: the files hold only {len(rows)} rows")
    return rows


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Padding share over the epoch and judge-row tokens/s over the steps after the first, per repeat."""
    rates: dict[str, list[float]] = {"step_cpu_times_s": [], "step_times_s": []}
    for result in results:
        real = [tokens for tokens, _ in result["batch_tokens"]]
        if len(result["step_times_s"]) != len(real):
            raise RuntimeError(f"{len(result['step_times_s'])} steps but {len(real)} batches: not one epoch")
        timed = slice(1, None) if len(real) > 1 else slice(None)
        for key, values in rates.items():
            values.append(sum(real[timed]) / sum(result[key][timed]))
    batches = results[0]["batch_tokens"]
    real_tokens = sum(tokens for tokens, _ in batches)
    fed_tokens = sum(fed for _, fed in batches)
    return {
        "steps": len(batches),
        "real_tokens": real_tokens,
        "fed_tokens": fed_tokens,
        "padding_share": 1 - real_tokens / fed_tokens,
        "real_tokens_per_cpu_s": statistics.median(rates["step_cpu_times_s"]),
        "real_tokens_per_s": statistics.median(rates["step_times_s"]),
        "epoch_cpu_s": statistics.median(sum(result["step_cpu_times_s"]) for result in results),
        "peak_rss_mib": statistics.median(result["peak_rss_bytes"] for result in results) / 2**20,
        "runs": results,
    }


def format_report(description: str, args: argparse.Namespace, summary: dict[str, Any]) -> str:
    lines = [
        f"model: {description}, LoRA r8 all; {args.rows} judge rows, micro-batch {args.batch_size}, "
        f"cutoff_len {args.cutoff_len}, one epoch x {args.repeats} repeats",
        "",
        "| configuration | steps | judge-row tokens | fed tokens | padding share "
        "| judge-row tokens / CPU s | judge-row tokens / s | epoch CPU (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, stats in summary.items():
        lines.append(
            f"| {name} | {stats['steps']} | {stats['real_tokens']} | {stats['fed_tokens']} "
            f"| {stats['padding_share']:.3f} | {stats['real_tokens_per_cpu_s']:.0f} "
            f"| {stats['real_tokens_per_s']:.0f} | {stats['epoch_cpu_s']:.1f} |"
        )
    packed, unpacked = summary["neat_packing"], summary["unpacked"]
    lines += [
        "",
        "neat_packing / unpacked, judge-row tokens per CPU s: "
        f"{packed['real_tokens_per_cpu_s'] / unpacked['real_tokens_per_cpu_s']:.3f}, per wall s: "
        f"{packed['real_tokens_per_s'] / unpacked['real_tokens_per_s']:.3f}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    tokenizer_dir = args.tokenizer
    if tokenizer_dir is None:
        from llamafactory_tract.demo.smollm2 import smollm2_hf_dir

        tokenizer_dir = str(smollm2_hf_dir())
    layers = args.layers or (1 if args.geometry == "llama3-slice" else 2)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tract_packing_") as work:
        work_dir = Path(work)
        model = prepare_model(
            args.geometry, Path(tokenizer_dir), work_dir / "model", args.vocab_size, args.hidden_size, layers
        )
        spec = {
            "model_dir": str(model.model_dir),
            "template": args.template,
            "dataset_dir": str(write_dataset(work_dir / "data", prometheus_rows(args.data, args.rows))),
            "work_dir": str(work_dir),
            "seq_len": args.cutoff_len,
            "batch_size": args.batch_size,
            "warmup": 1,
            "steps": 0,
            "count_tokens": True,
            "threads": 1,
            "configs": {name: {**config, **ONE_EPOCH} for name, config in CONFIGS.items()},
        }
        spec_path = work_dir / "spec.json"
        spec_path.write_text(json.dumps(spec))
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in CONFIGS}
        for _ in range(args.repeats):
            for name in CONFIGS:
                runs[name].append(measure_in_subprocess(spec_path, name, args.timeout))
    summary = {name: summarise(results) for name, results in runs.items()}
    report = format_report(model.description, args, summary)
    result = {
        "config": {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()},
        "model": model.description,
        "packing": summary,
        "wall_s": time.perf_counter() - started,
        "table": report,
    }
    result["config"]["data"] = [str(path) for path in args.data]
    save_result(args.out, "packing", result)
    return result


if __name__ == "__main__":
    main()
