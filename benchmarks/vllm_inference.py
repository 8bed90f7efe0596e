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

"""CoT-RAIL and D_self generation on the vLLM backend against the transformers backend: same rows, same CoT budget.

Both backends judge the same rows with the paper's sampling (temperature 1, top_p 0.9, repetition
penalty 1.03, ``max_new_tokens`` per CoT) in batches of ``batch_size`` rows, as ``tract eval`` and
``tract generate`` do, after one untimed warm-up row; the model is the same float32 checkpoint, and
vLLM's prefix cache is emptied before each task (as in a fresh run, no prompt is cached).
CoT-RAIL is the ``cot_rail`` predictor (CoT, then the score step); D_self is ``sample_cots`` without
the score step, with the same seeds, so the difference of the two is the cost of the score step.

Forward tokens: for transformers, every position fed to a forward call (padding included), counted by
a hook as in ``benchmarks/inference.py``; for vLLM, the positions the engine computed (each prompt less
its prefix-cache hit, plus the generated tokens but the last), from the request outputs. On CPU both
backends draw the same CoTs from the same seeds (both sample argmax(p / q), q ~ Exp(1), from a per-row
generator); elsewhere they may not, so the generated tokens are reported too.
The vLLM engine is started once; its start-up is reported apart and not in rows/s.
"""

import gc
import os
import time
from collections.abc import Callable
from typing import Any

import torch

from llamafactory_tract.eval.config import build_eval_config
from llamafactory_tract.judge.backend import JudgeBackend, JudgePrompt, SamplingConfig
from llamafactory_tract.judge.loader import load_backend
from llamafactory_tract.judge.predictors import JudgePredictor, example_seed

SEED = 42
TASKS = ("cot_rail", "d_self")


def measure_vllm_inference(
    model_dir: str,
    template: str,
    instructions: list[str],
    max_new_tokens: int,
    batch_size: int,
    max_prompt_len: int,
    vllm_config: dict[str, Any],
    hf_threads: int = 1,
) -> dict[str, Any]:
    """Rows/s, forward and generated tokens of both tasks on both backends, and their vLLM/transformers ratios.

    ``hf_threads``: torch threads of the transformers run; 1 matches vLLM on CPU, whose model runs on one
    core (the other serves its scheduler).
    """
    settings = {
        "model_name_or_path": model_dir,
        "template": template,
        "infer_dtype": "float32",
        "max_new_tokens": max_new_tokens,
        "batch_size": batch_size,
        "max_prompt_len": max_prompt_len,
        "seed": SEED,
    }
    prompts = [JudgePrompt.from_instruction(text) for text in instructions]
    threads = torch.get_num_threads()
    torch.set_num_threads(hf_threads)
    try:
        hf = _measure_hf(settings, prompts)
    finally:
        torch.set_num_threads(threads)
    hf["load_average_after"] = os.getloadavg()
    results = {"hf": hf, "vllm": _measure_vllm(settings, prompts, vllm_config)}
    results["vllm"]["load_average_after"] = os.getloadavg()
    ratios = {
        f"{task}_{measure}": results["vllm"][task][measure] / results["hf"][task][measure]
        for task in TASKS
        for measure in ("rows_per_s", "forward_tokens")
    }
    return {
        "rows": len(prompts),
        "max_new_tokens": max_new_tokens,
        "batch_size": batch_size,
        "hf_threads": hf_threads,
        "vllm_config": vllm_config,
        **results,
        "ratios_vllm_over_hf": ratios,
    }


def _measure_hf(settings: dict[str, Any], prompts: list[JudgePrompt]) -> dict[str, Any]:
    backend = load_backend(build_eval_config({**settings, "backend": "hf"}, source="benchmark"), with_cot=True)
    fed = {"tokens": 0}

    def count_tokens(_module, args, kwargs):
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        fed["tokens"] += int(input_ids.numel())

    handle = backend.model.register_forward_pre_hook(count_tokens, with_kwargs=True)
    try:
        result = _run_tasks(backend, settings, prompts, lambda: fed["tokens"])
    finally:
        handle.remove()
    del backend
    gc.collect()
    return result


def _measure_vllm(settings: dict[str, Any], prompts: list[JudgePrompt], vllm_config: dict[str, Any]) -> dict[str, Any]:
    engine_len = settings["max_prompt_len"] + settings["max_new_tokens"] + 64  # the whole CoT budget fits
    config = build_eval_config(
        {**settings, "backend": "vllm", "vllm_maxlen": engine_len, "vllm_config": vllm_config}, source="benchmark"
    )
    started = time.perf_counter()
    backend = load_backend(config, with_cot=True)
    startup = time.perf_counter() - started
    try:
        result = _run_tasks(
            backend, settings, prompts, lambda: backend.forward_tokens, backend.engine.reset_prefix_cache
        )
        result["exact_fallback_rows"] = backend.exact_fallbacks
    finally:
        backend.close()
    return {**result, "engine_startup_s": startup}


def _run_tasks(
    backend: JudgeBackend,
    settings: dict[str, Any],
    prompts: list[JudgePrompt],
    forward_tokens: Callable[[], int],
    reset: Callable[[], Any] = lambda: None,
) -> dict[str, Any]:
    """Warm up on one row, then time CoT-RAIL and D_self generation over all rows in batches, each from ``reset``."""
    sampling = SamplingConfig(max_new_tokens=settings["max_new_tokens"])
    keys = [f"bench/{index}" for index in range(len(prompts))]
    predictor = JudgePredictor(backend, "cot_rail", sampling, n_cot=1, seed=SEED)
    with torch.inference_mode():
        predictor.predict(prompts[:1], ["warm-up"])
    result = {}
    for task in TASKS:
        reset()  # vLLM: no prompt cached by the warm-up or by the previous task, as in a fresh run
        before, generated = forward_tokens(), 0
        started = time.perf_counter()
        for start in range(0, len(prompts), settings["batch_size"]):
            end = start + settings["batch_size"]
            batch, batch_keys = prompts[start:end], keys[start:end]
            with torch.inference_mode():
                if task == "cot_rail":
                    generated += sum(sum(p.generated_tokens) for p in predictor.predict(batch, batch_keys))
                else:
                    seeds = [example_seed(SEED, key, 0) for key in batch_keys]
                    samples = backend.sample_cots(batch, sampling, seeds, with_scores=False)
                    generated += sum(sample.generated_tokens for sample in samples)
        seconds = time.perf_counter() - started
        result[task] = {
            "seconds": seconds,
            "rows_per_s": len(prompts) / seconds,
            "forward_tokens": forward_tokens() - before,
            "generated_tokens": generated,
        }
    result["score_step_forward_tokens"] = result["cot_rail"]["forward_tokens"] - result["d_self"]["forward_tokens"]
    return result


def vllm_rows(measured: dict[str, Any]) -> list[str]:
    """Markdown rows for the report: each task on each backend, then the vLLM/transformers ratios."""
    lines = [
        "",
        f"vLLM vs transformers: {measured['rows']} rows, {measured['max_new_tokens']} new tokens per CoT, batches of "
        f"{measured['batch_size']} rows, float32, transformers on {measured['hf_threads']} thread(s); "
        f"vLLM engine start-up {measured['vllm']['engine_startup_s']:.0f} s (not counted); load average after the "
        f"transformers / vLLM runs: {measured['hf']['load_average_after'][0]:.1f} / "
        f"{measured['vllm']['load_average_after'][0]:.1f} on {os.cpu_count()} cores",
        "",
        "| task | backend | s | rows/s | forward tokens | generated tokens |",
        "|---|---|---|---|---|---|",
    ]
    for task in TASKS:
        for name in ("hf", "vllm"):
            stats = measured[name][task]
            lines.append(
                f"| {task} | {name} | {stats['seconds']:.1f} | {stats['rows_per_s']:.3f} | {stats['forward_tokens']} "
                f"| {stats['generated_tokens']} |"
            )
    lines += ["", "| vLLM / transformers | ratio |", "|---|---|"]
    lines += [f"| {label} | {value:.3f} |" for label, value in measured["ratios_vllm_over_hf"].items()]
    lines += [
        "",
        "score step (CoT-RAIL minus D_self forward tokens): "
        f"transformers {measured['hf']['score_step_forward_tokens']}, "
        f"vLLM {measured['vllm']['score_step_forward_tokens']}; vLLM rows read over the full vocabulary: "
        f"{measured['vllm']['exact_fallback_rows']}",
    ]
    return lines
