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

"""Randomly initialised Llama models around a real tokenizer, for the tests and the benchmark.

Real architecture, real tokenizer, random weights: cheap enough for CPU, and the model's vocabulary
may exceed the tokenizer's (the benchmark needs Llama-3's 128K rows so that logits dominate memory).
"""

from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase


def save_random_llama(
    tokenizer: PreTrainedTokenizerBase,
    directory: Path,
    hidden_size: int = 32,
    num_layers: int = 2,
    vocab_size: int | None = None,
    max_position_embeddings: int = 8192,
    seed: int = 0,
) -> Path:
    """Save a LlamaForCausalLM with random weights and the tokenizer, loadable by LLaMA-Factory."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=max(vocab_size or 0, len(tokenizer)),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
