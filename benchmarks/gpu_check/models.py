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


"""Model folders for the device check: configuration and tokenizer only, weights drawn at load time.

No real weights fit a device call, so every model has random weights at a real shape. The paper's
shapes (Llama-3-8B, Mistral-7B) are drawn on the GPU in bf16 when LLaMA-Factory loads them
(``train_from_scratch``; see ``random_init_training``); the small model of the CLI and DeepSpeed parts
is saved with its weights so that LLaMA-Factory loads it exactly as a user's checkpoint.
"""

import shutil
from pathlib import Path
from typing import Any

# The paper's seed models' shapes. The vocabulary is the shape's own where the offline tokenizer
# (SmolLM2's, 49,152 ids) fits in it; Mistral's 32,000 does not, so its shape keeps 49,152.
LLAMA3_8B: dict[str, Any] = dict(
    model_type="llama",
    hidden_size=4096,
    intermediate_size=14336,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=8,
    vocab_size=128256,
    rope_theta=500000.0,
    rms_norm_eps=1e-5,
    max_position_embeddings=8192,
    tie_word_embeddings=False,
)
MISTRAL_7B: dict[str, Any] = dict(
    model_type="mistral",
    hidden_size=4096,
    intermediate_size=14336,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=8,
    vocab_size=49152,
    rope_theta=1000000.0,
    rms_norm_eps=1e-5,
    max_position_embeddings=32768,
    sliding_window=None,
    tie_word_embeddings=False,
)
PAPER_SHAPES = {"llama3-8b": LLAMA3_8B, "mistral-7b": MISTRAL_7B}
# The dry run's stand-ins: the same families, a few units wide.
TINY_SHAPE = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2
)
SMALL_SHAPE = dict(
    hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=4
)


def copy_tokenizer(tokenizer_dir: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for file in tokenizer_dir.iterdir():
        shutil.copy2(file, target / file.name)


def token_ids(tokenizer_dir: Path) -> dict[str, int | None]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    return {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }


def write_config_only(tokenizer_dir: Path, target: Path, shape: dict[str, Any], tiny: bool) -> Path:
    """A folder LLaMA-Factory loads with ``train_from_scratch`` (no weights file), in ``shape`` or its tiny form."""
    from transformers import AutoConfig

    shape = {**shape, **(TINY_SHAPE if tiny else {})}
    model_type = shape.pop("model_type")
    config = AutoConfig.for_model(model_type, **shape, **token_ids(tokenizer_dir))
    config.dtype = "bfloat16"
    copy_tokenizer(tokenizer_dir, target)
    config.save_pretrained(target)
    return target


def write_small_llama(tokenizer_dir: Path, target: Path, tiny: bool, seed: int = 0) -> Path:
    """A small random Llama with weights (float32 on disk), SmolLM2's vocabulary and tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    ids = token_ids(tokenizer_dir)
    config = LlamaConfig(vocab_size=49152, **(TINY_SHAPE if tiny else SMALL_SHAPE), **ids)
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(target)
    copy_tokenizer(tokenizer_dir, target)
    return target


def shape_description(name: str, tiny: bool) -> str:
    shape = PAPER_SHAPES[name]
    if tiny:
        return f"{name} family, tiny (hidden {TINY_SHAPE['hidden_size']}, {TINY_SHAPE['num_hidden_layers']} layers)"
    return (
        f"{name}: hidden {shape['hidden_size']}, {shape['num_hidden_layers']} layers, "
        f"MLP {shape['intermediate_size']}, "
        f"GQA {shape['num_attention_heads']}/{shape['num_key_value_heads']}, "
        f"vocab {shape['vocab_size']}, random bf16"
    )
