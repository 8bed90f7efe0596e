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

"""The model shapes the training benchmarks run at.

``toy`` is the old CPU benchmark's random Llama (hidden 64, vocab 128,256): there the vocabulary
projection is nearly all the work, so it exaggerates what the loss changes. ``smollm2`` is the real
SmolLM2-135M-Instruct (hidden 576, 30 layers, vocab 49,152, tied embeddings), ``llama3-slice`` one
or two layers of a Llama-3-8B-shaped model (hidden 4096, MLP 14,336, 32 query / 8 key-value heads,
vocab 128,256, untied head) with random weights: per token, each layer costs what one of the 32
layers of the 8B model costs, and the head and embeddings are the 8B model's. ``llama3.2-1b`` is
Llama-3.2-1B's shape (hidden 2048, 16 layers, MLP 8192, GQA 32/8, vocab 128,256, tied head), random
weights: a whole small model of a real family, for GPUs (``benchmarks/gpu_liger.py``).
"""

from dataclasses import dataclass
from pathlib import Path

GEOMETRIES = ("toy", "smollm2", "llama3-slice", "llama3.2-1b")
LLAMA3 = dict(
    num_attention_heads=32,
    num_key_value_heads=8,
    vocab_size=128256,
    rope_theta=500000.0,
    rms_norm_eps=1e-5,
    max_position_embeddings=8192,
)
LLAMA3_8B = dict(hidden_size=4096, intermediate_size=14336, tie_word_embeddings=False, **LLAMA3)
LLAMA3_2_1B = dict(hidden_size=2048, intermediate_size=8192, tie_word_embeddings=True, **LLAMA3)


@dataclass(frozen=True)
class PreparedModel:
    model_dir: Path
    description: str


def prepare_model(
    geometry: str, tokenizer_dir: Path, directory: Path, vocab_size: int, hidden_size: int, layers: int
) -> PreparedModel:
    """The model folder for ``geometry`` (written under ``directory`` unless it is SmolLM2's own folder).

    ``vocab_size``/``hidden_size``/``layers`` shape the toy model; ``layers`` also sets the Llama-3 slice's depth.
    """
    if geometry == "toy":
        from transformers import AutoTokenizer

        from benchmarks.random_llama import save_random_llama

        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        model_dir = save_random_llama(tokenizer, directory, hidden_size, layers, vocab_size)
        return PreparedModel(
            model_dir, f"toy: random Llama, vocab {vocab_size}, hidden {hidden_size}, {layers} layers"
        )
    if geometry == "smollm2":
        from llamafactory_tract.demo.smollm2 import smollm2_hf_dir

        return PreparedModel(
            smollm2_hf_dir(), "SmolLM2-135M-Instruct (real weights): hidden 576, 30 layers, vocab 49152"
        )
    if geometry == "llama3-slice":
        return PreparedModel(
            save_random_llama3(tokenizer_dir, directory, layers, LLAMA3_8B),
            f"Llama-3-8B slice (random weights): hidden 4096, MLP 14336, GQA 32/8, vocab 128256, {layers} layers",
        )
    if geometry == "llama3.2-1b":
        return PreparedModel(
            save_random_llama3(tokenizer_dir, directory, 16, LLAMA3_2_1B),
            "Llama-3.2-1B shape (random weights): hidden 2048, 16 layers, MLP 8192, GQA 32/8, vocab 128256, tied",
        )
    raise ValueError(f"unknown geometry {geometry!r}; choose one of {', '.join(GEOMETRIES)}")


def save_random_llama3(tokenizer_dir: Path, directory: Path, layers: int, shape: dict) -> Path:
    """A Llama-3-family model of ``shape`` with ``layers`` layers, initialised and stored in bf16.

    LLaMA-Factory loads it in the run's compute dtype (float32 on CPU, bf16 with ``bf16: true``).

    The tokenizer is the given one (Llama-3's own is not available offline); its ids are a subset of the
    128,256 rows, which is all the timing and memory of the head depend on.
    """
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(
        num_hidden_layers=layers,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **shape,
    )
    torch.manual_seed(0)
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(default_dtype)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
