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

"""CoT-RAIL against CoT + decode on the transformers backend: same model, prompts and sampled CoTs.

Both predictors sample the CoT with the same seeds; CoT-RAIL then needs the score distribution
after the delimiter. The backend reads it from one forward pass over the few tokens after the
generation's KV cache, so the expected cost is that of decoding. Forward tokens are counted with
a hook on the model (every position fed to a forward call, padding included); the tokens a
second full pass over prompt + CoT would have fed are reported for comparison.
"""

import statistics
import time
from typing import Any

import torch

from llamafactory_tract.eval.config import build_eval_config
from llamafactory_tract.judge.backend import JudgePrompt, SamplingConfig
from llamafactory_tract.judge.loader import load_backend
from llamafactory_tract.judge.predictors import JudgePredictor

PREDICTORS = ("cot_decode", "cot_rail")


def measure_inference(
    model_dir: str, template: str, instructions: list[str], max_new_tokens: int, repeats: int, max_prompt_len: int
) -> dict[str, Any]:
    config = build_eval_config(
        {
            "model_name_or_path": model_dir,
            "template": template,
            "backend": "hf",
            "infer_dtype": "float32",
            "max_new_tokens": max_new_tokens,
            "batch_size": len(instructions),
            "max_prompt_len": max_prompt_len,
        },
        source="benchmark",
    )
    backend = load_backend(config, with_cot=True)
    fed = {"tokens": 0}

    def count_tokens(_module, args, kwargs):
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        fed["tokens"] += int(input_ids.numel())

    handle = backend.model.register_forward_pre_hook(count_tokens, with_kwargs=True)
    sampling = SamplingConfig(config.temperature, config.top_p, config.repetition_penalty, max_new_tokens)
    prompts = [JudgePrompt.from_instruction(text) for text in instructions]
    keys = [f"bench/{index}" for index in range(len(prompts))]
    times: dict[str, list[float]] = {name: [] for name in PREDICTORS}
    tokens: dict[str, int] = {}
    cots: dict[str, list[list[str]]] = {}
    try:
        for _ in range(repeats + 1):  # the first round warms up
            for name in PREDICTORS:
                predictor = JudgePredictor(backend, name, sampling, n_cot=1, seed=config.seed)
                fed["tokens"] = 0
                started = time.perf_counter()
                with torch.inference_mode():
                    predictions = predictor.predict(prompts, keys)
                times[name].append(time.perf_counter() - started)
                tokens[name] = fed["tokens"]
                cots[name] = [prediction.cots for prediction in predictions]
    finally:
        handle.remove()
    if cots["cot_rail"] != cots["cot_decode"]:
        raise RuntimeError("the two predictors sampled different CoTs with the same seeds")
    rescoring = sum(
        len(backend.contexts.score_context(prompt, cot[0]))
        for prompt, cot in zip(prompts, cots["cot_rail"], strict=True)
    )
    median = {name: statistics.median(values[1:]) for name, values in times.items()}
    return {
        "prompts": len(prompts),
        "max_new_tokens": max_new_tokens,
        "median_s": median,
        "forward_tokens": tokens,
        "second_pass_tokens_avoided": rescoring,
        "ratio_time_cot_rail_over_decode": median["cot_rail"] / median["cot_decode"],
        "ratio_tokens_cot_rail_over_decode": tokens["cot_rail"] / tokens["cot_decode"],
    }
