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

"""Session fixtures: tiny random models with real tokenizers, and the real SmolLM2 when installed."""

from pathlib import Path

import pytest

from benchmarks.random_llama import save_random_llama
from tests.helpers.inference import require_smollm2
from tests.helpers.tiny_models import gpt2_style_tokenizer, sentencepiece_style_tokenizer, tiktoken_style_tokenizer

# (tokenizer family, builder, LLaMA-Factory template)
TINY_FAMILIES = {
    "sentencepiece": (sentencepiece_style_tokenizer, "mistral"),
    "tiktoken": (tiktoken_style_tokenizer, "llama3"),
    "gpt2": (gpt2_style_tokenizer, "qwen"),
}


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """family -> (model folder, template) for a randomly initialised 2-layer Llama per tokenizer family."""
    root = tmp_path_factory.mktemp("tiny_models")
    return {
        family: (save_random_llama(builder(), root / family), template)
        for family, (builder, template) in TINY_FAMILIES.items()
    }


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    return require_smollm2()
