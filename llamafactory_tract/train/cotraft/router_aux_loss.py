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

"""The mixture-of-experts router auxiliary loss, which transformers adds only when it is given labels.

With ``output_router_logits`` on (LLaMA-Factory turns it on for ``moe_aux_loss_coef``), a MoE causal
LM (Mixtral, Qwen2/3-MoE, OLMoE, ...) returns ``aux_loss`` = transformers' ``load_balancing_loss_func``
of its router logits, and adds ``router_aux_loss_coef * aux_loss`` to its loss when labels are passed.
``cotraft`` passes no labels (its loss is computed outside the model), so the term is added here,
with the coefficient the model's own forward uses: the same objective as ``stage: sft``.
"""

from typing import Any

from torch import nn

from llamafactory_tract.train.cotraft.final_hidden_states import base_causal_lm
from llamafactory_tract.train.cotraft.loss import CoTRaftLoss

# Where transformers' MoE forwards read the coefficient: `self.router_aux_loss_coef` (most),
# `self.aux_loss_coef` (JetMoE), `config.text_config.router_aux_loss_coef` (vision-language MoE wrappers).
COEFFICIENT_ATTRIBUTES = ("router_aux_loss_coef", "aux_loss_coef")


def router_aux_loss_coef(model: nn.Module) -> float | None:
    """The coefficient of the router auxiliary loss the model computes, or None when it computes none."""
    causal_lm = base_causal_lm(model)
    text_config = causal_lm.config.get_text_config()
    if not getattr(text_config, "output_router_logits", False):
        return None
    for owner in (causal_lm, text_config):
        for name in COEFFICIENT_ATTRIBUTES:
            value = getattr(owner, name, None)
            if value is not None:
                return float(value)
    raise ValueError(
        f"{type(causal_lm).__name__} returns router logits (output_router_logits) but no router auxiliary loss "
        f"coefficient was found ({' / '.join(COEFFICIENT_ATTRIBUTES)}): set `moe_aux_loss_coef` or turn "
        "`output_router_logits` off in the model's config."
    )


def with_router_aux_loss(parts: CoTRaftLoss, outputs: Any, coefficient: float | None) -> CoTRaftLoss:
    """``parts`` with ``coefficient * outputs.aux_loss`` added to the loss and kept as ``aux_loss``."""
    if coefficient is None:
        return parts
    aux_loss = getattr(outputs, "aux_loss", None)
    if aux_loss is None:
        raise RuntimeError("the model's config sets output_router_logits, but its forward returned no aux_loss")
    term = coefficient * aux_loss.to(parts.loss)
    return parts._replace(loss=parts.loss + term, aux_loss=term)
