"""Final hidden states and the LM head of a causal LM, for the chunked loss (no full logits).

The chunked loss recomputes ``logits = lm_head(hidden)`` itself, so it is exact only for models
whose logits are exactly that: an allow-list of model types whose ``ForCausalLM.forward`` is
``self.lm_head(hidden_states[:, slice_indices, :])`` (checked against transformers 5.6) and a
plain ``nn.Linear`` head. Softcapped or scaled logits (Gemma 2/3, Cohere, Granite), adapters on
the head, vision-language wrappers and sharded weights (ZeRO-3, FSDP) fall back to full logits.
"""

from typing import Any

import torch
from torch import nn

PLAIN_HEAD_MODEL_TYPES = frozenset(
    {"llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "phi3", "olmo2", "gemma"}
)


def base_causal_lm(model: nn.Module) -> nn.Module:
    """The transformers ``*ForCausalLM`` under a PEFT wrapper (LoRA layers are injected in place)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def chunked_loss_blocker(model: nn.Module, sharded_weights: bool) -> str | None:
    """Why the chunked loss would not reproduce this model's logits, or None when it is safe."""
    causal_lm = base_causal_lm(model)
    model_type = getattr(getattr(causal_lm, "config", None), "model_type", None)
    if model_type not in PLAIN_HEAD_MODEL_TYPES:
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
