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

"""The CoT-RAFT loss from final hidden states, without ever materialising [B, T, V] logits.

With a 128K vocabulary and long judge sequences the logits (and their softmax and gradient)
dominate training memory. Here the CE term runs over the labelled positions only, in chunks
of rows, and each chunk's gradient is computed in the forward pass (as Liger's fused linear
cross-entropy does), so at most one chunk x vocabulary buffer lives at a time and nothing is
recomputed. The RAFT term needs one logit row per sequence, computed from the hidden state
at the score position. Returns the same ``CoTRaftLoss`` parts as ``loss.cotraft_loss``.
"""

import torch
import torch.nn.functional as F

from llamafactory_tract.extras.constants import DEFAULT_CHUNK_SIZE
from llamafactory_tract.train.cotraft.loss import (
    IGNORE_INDEX,
    CoTRaftLoss,
    combine_terms,
    expected_scores_from_logits,
    upcast_half,
)


def _accumulation_dtype(tensor: torch.Tensor) -> torch.dtype:
    """fp32 for half precisions (as ``upcast_half``), else the tensor's own dtype."""
    return upcast_half(tensor.new_empty(())).dtype


def _chunk_ce(
    hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor, with_grad: bool
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Summed CE of one chunk; with_grad: also d(sum)/d(hidden) and d(sum)/d(logits) (fp32)."""
    logits = upcast_half(F.linear(hidden, weight, bias))
    log_norm = torch.logsumexp(logits, dim=-1)
    ce_sum = (log_norm - logits.gather(1, targets[:, None]).squeeze(1)).sum()
    if not with_grad:
        return ce_sum, None, None
    grad_logits = logits.sub_(log_norm[:, None]).exp_()  # softmax, in place of the logits
    grad_logits[torch.arange(targets.numel(), device=targets.device), targets] -= 1.0
    return ce_sum, grad_logits.to(weight.dtype) @ weight, grad_logits


class _LinearCrossEntropySum(torch.autograd.Function):
    """sum CE(hidden @ weight.T + bias, targets) over chunks of rows; gradients computed in forward."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk_size):
        need_hidden, need_weight, need_bias = ctx.needs_input_grad[:3]
        ctx.weight_dtype = weight.dtype
        accumulate = _accumulation_dtype(hidden)
        total = torch.zeros((), dtype=accumulate, device=hidden.device)
        grad_hidden = torch.zeros_like(hidden) if need_hidden else None
        grad_weight = torch.zeros_like(weight, dtype=accumulate) if need_weight else None
        grad_bias = torch.zeros_like(bias, dtype=accumulate) if need_bias else None
        for start in range(0, hidden.size(0), chunk_size):
            rows = slice(start, start + chunk_size)
            ce_sum, chunk_grad_hidden, grad_logits = _chunk_ce(hidden[rows], weight, bias, targets[rows], True)
            total += ce_sum
            if need_hidden:
                grad_hidden[rows] = chunk_grad_hidden
            if need_weight:
                grad_weight.addmm_(grad_logits.t(), hidden[rows].to(accumulate))
            if need_bias:
                grad_bias += grad_logits.sum(0)
        ctx.save_for_backward(grad_hidden, grad_weight, grad_bias)
        return total

    @staticmethod
    def backward(ctx, grad_output):
        grad_hidden, grad_weight, grad_bias = ctx.saved_tensors
        scale = grad_output.to(_accumulation_dtype(grad_output))
        return (
            None if grad_hidden is None else grad_hidden * scale.to(grad_hidden.dtype),
            None if grad_weight is None else (grad_weight * scale).to(ctx.weight_dtype),
            None if grad_bias is None else (grad_bias * scale).to(ctx.weight_dtype),
            None,
            None,
        )


def linear_cross_entropy_sum(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> torch.Tensor:
    """sum_i CE(hidden[i] @ weight.T + bias, targets[i]), holding one [chunk_size, V] buffer at a time."""
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (hidden, weight, bias)):
        return _LinearCrossEntropySum.apply(hidden, weight, bias, targets, chunk_size)
    total = torch.zeros((), dtype=_accumulation_dtype(hidden), device=hidden.device)
    for start in range(0, hidden.size(0), chunk_size):
        rows = slice(start, start + chunk_size)
        total += _chunk_ce(hidden[rows], weight, bias, targets[rows], False)[0]
    return total


def chunked_cotraft_loss(
    hidden_states: torch.Tensor,
    lm_head_weight: torch.Tensor,
    lm_head_bias: torch.Tensor | None,
    labels: torch.Tensor,
    score_index: torch.Tensor,
    score_target: torch.Tensor,
    score_token_ids: torch.Tensor,
    score_values: torch.Tensor,
    raft_lambda: float,
    ce_normalizer: torch.Tensor | float,
    raft_normalizer: torch.Tensor | float,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> CoTRaftLoss:
    """``cotraft_loss`` with ``logits = hidden_states @ lm_head_weight.T + lm_head_bias`` never built in full.

    hidden_states: [B, T, H] final (post-norm) hidden states; the other arguments as in ``cotraft_loss``.
    """
    shifted_labels = F.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)
    labelled = shifted_labels.ne(IGNORE_INDEX)
    ce_sum = linear_cross_entropy_sum(
        hidden_states[labelled], lm_head_weight, lm_head_bias, shifted_labels[labelled], chunk_size
    )
    rows = torch.arange(hidden_states.size(0), device=hidden_states.device).view(-1, *[1] * (score_index.dim() - 1))
    score_hidden = hidden_states[rows, (score_index - 1).clamp(min=0)]  # [B, H] or, packed, [B, K, H]
    score_logits = F.linear(score_hidden, lm_head_weight, lm_head_bias)
    expected = expected_scores_from_logits(score_logits, score_token_ids, score_values)
    return combine_terms(ce_sum, expected, score_index, score_target, raft_lambda, ce_normalizer, raft_normalizer)
