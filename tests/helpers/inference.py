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

"""Shared test set-up: tiny judge models, SmolLM2, and the shared Prometheus data (skipped with reason if absent)."""

import json
import os
from pathlib import Path

import pytest

from benchmarks.random_llama import save_random_llama
from llamafactory_tract.eval.config import EvalConfig, build_eval_config
from llamafactory_tract.judge.backend import JudgeBackend, JudgePrompt
from llamafactory_tract.judge.loader import load_backend
from tests.helpers.paths import REPO_ROOT
from tests.helpers.tiny_models import gpt2_style_tokenizer, sentencepiece_style_tokenizer, tiktoken_style_tokenizer

# (template, tokenizer factory): the three tokenisation families of DESIGN.md section 3.
TINY_FAMILIES = {
    "mistral": sentencepiece_style_tokenizer,
    "llama3": tiktoken_style_tokenizer,
    "chatml": gpt2_style_tokenizer,
}
PROMPTS = [
    JudgePrompt.from_instruction("###Task Description: How can I improve my time management skills?"),
    JudgePrompt.from_instruction("12 apples and 345 pears cost 6789 coins."),
]


def shared_data_dir() -> Path:
    return Path(os.environ.get("TRACT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data" / "prometheus"))


def require_shared_file(name: str) -> Path:
    path = shared_data_dir() / name
    if not path.is_file():
        pytest.skip(f"shared benchmark data {path} is absent (set TRACT_SHARED_DATA to its folder)")
    return path


def real_rows(name: str, count: int) -> list[dict]:
    return json.loads(require_shared_file(name).read_text())[:count]


def require_smollm2() -> Path:
    from llamafactory_tract.demo.smollm2 import smollm2_hf_dir

    try:
        return smollm2_hf_dir()
    except FileNotFoundError as error:
        pytest.skip(f"SmolLM2-135M-Instruct is not available: {error}")


def tiny_model_dir(root: Path, template: str) -> Path:
    directory = root / f"tiny_{template}"
    if not (directory / "config.json").is_file():
        save_random_llama(TINY_FAMILIES[template](), directory)
    return directory


def eval_config(model_dir: Path, template: str, **overrides) -> EvalConfig:
    raw = {
        "model_name_or_path": str(model_dir),
        "template": template,
        "infer_dtype": "float32",
        "max_new_tokens": 6,
        "benchmarks": {"vicuna_bench": {}},
        **overrides,
    }
    return build_eval_config(raw)


def tiny_backend(root: Path, template: str, with_cot: bool) -> JudgeBackend:
    return load_backend(eval_config(tiny_model_dir(root, template), template), with_cot=with_cot)
