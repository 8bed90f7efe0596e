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

"""Final hidden states and the LM head of a causal LM, for the chunked loss (no full logits).

The chunked loss recomputes ``logits = lm_head(hidden)`` itself, so it is exact only for models
whose logits are exactly that: model types whose ``ForCausalLM.forward`` computes
``self.lm_head(hidden_states[:, slice_indices, :])`` from the decoder's ``last_hidden_state`` and
returns it unchanged (checked against the installed transformers by ``tests/train/test_chunked_loss.py``),
or only softcaps it when ``final_logit_softcapping`` is set (Gemma 2/3 text: released Gemma 2
configs set it, Gemma 3 text leaves it None), with a plain ``nn.Linear`` head. Everything else falls
back to full logits: softcapping in use, scaled logits (Cohere, Granite), vision-language wrappers
(e.g. ``gemma3``, the multimodal Gemma 3), adapters on the head, unlisted types and sharded weights
(ZeRO-3, FSDP).
"""

from typing import Any

import torch
from torch import nn

PLAIN_HEAD_MODEL_TYPES = frozenset(
    {
        "llama", "mistral", "ministral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "phi", "phi3",
        "phimoe", "olmo", "olmo2", "olmo3", "olmoe", "gemma", "glm", "glm4", "deepseek_v2", "deepseek_v3",
        "starcoder2", "stablelm", "smollm3", "gpt_oss", "ernie4_5", "ernie4_5_moe", "seed_oss",
    }
)  # fmt: skip
SOFTCAP_IF_SET_MODEL_TYPES = frozenset({"gemma2", "gemma3_text"})


def base_causal_lm(model: nn.Module) -> nn.Module:
    """The transformers ``*ForCausalLM`` under a PEFT wrapper (LoRA layers are injected in place)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def chunked_loss_blocker(model: nn.Module, sharded_weights: bool) -> str | None:
    """Why the chunked loss would not reproduce this model's logits, or None when it is safe."""
    causal_lm = base_causal_lm(model)
    model_type = getattr(getattr(causal_lm, "config", None), "model_type", None)
    if model_type in SOFTCAP_IF_SET_MODEL_TYPES:
        softcap = getattr(causal_lm.config, "final_logit_softcapping", None)
        if softcap is not None:
            return f"model type {model_type!r} softcaps its logits (final_logit_softcapping={softcap})"
    elif model_type not in PLAIN_HEAD_MODEL_TYPES:
        return f"model type {model_type!r} is not known to compute logits as a plain lm_head(hidden_states)"
    if sharded_weights:
        return "the LM head weight is sharded (DeepSpeed ZeRO-3 / FSDP) outside the model's forward"
    head = causal_lm.get_output_embeddings()
    if type(head) is not nn.Linear:
        return f"the LM head is a {type(head).__name__}, not a plain nn.Linear (e.g. adapters on lm_head)"
    return None


def lm_head_parameters(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    head = base_causal_lm(model).get_output_embeddings()
    return head.weight, head.bias


def forward_final_hidden_states(
    model: nn.Module, unwrapped: nn.Module, inputs: dict[str, Any]
) -> tuple[torch.Tensor, Any]:
    """Run ``model`` (any DDP wrapper included) computing one logit row, and return the decoder's output.

    The decoder's ``last_hidden_state`` is post final norm, i.e. exactly what ``lm_head`` receives.
    """
    captured: list[torch.Tensor] = []
    decoder = base_causal_lm(unwrapped).get_decoder()
    handle = decoder.register_forward_hook(lambda _module, _args, output: captured.append(output.last_hidden_state))
    try:
        outputs = model(**inputs, logits_to_keep=1)
    finally:
        handle.remove()
    if len(captured) != 1:
        raise RuntimeError(f"expected one decoder call per forward, got {len(captured)}")
    return captured[0], outputs
