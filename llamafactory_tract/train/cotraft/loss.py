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

"""The CoT-RAFT objective (paper Eq. 4) as a pure torch function.

lambda * (sum_y y * p(str(y) | [x, s*]) - y*)^2  -  log p([s*, y*] | x), with the score token
masked out of the CE term. Both terms are *sums* divided by counts over the whole effective
batch (all micro-batches and processes), so the result does not depend on how the effective
batch is split into per-device batch x gradient accumulation x processes.
"""

from typing import NamedTuple

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100
# At its peak (backward) ``cotraft_loss`` holds three float32 [batch, tokens, vocab] buffers: the
# log-softmax kept from the forward (where the float32 logits also live), the gradient reaching it,
# and the gradient of the logits (measured on an H200, bf16 Llama-3 head: 12.0 bytes per logit).
# The chunked loss holds a few [chunk, vocab] buffers instead, whatever the sequence length.
FULL_LOGIT_FLOAT32_BUFFERS = 3
FLOAT32_BYTES = 4


class CoTRaftLoss(NamedTuple):
    loss: torch.Tensor
    """ce_sum / ce_normalizer + raft_lambda * squared_error_sum / raft_normalizer (what is backpropagated)."""
    ce_sum: torch.Tensor
    """Summed token cross-entropy over the CoT and end-of-turn tokens of this micro-batch."""
    squared_error_sum: torch.Tensor
    """Summed (expected score - y*)^2 over the scored judge rows of this micro-batch."""
    expected_scores: torch.Tensor
    """Expected score of each judge row under the full-vocabulary softmax, shaped like ``score_index``."""
    aux_loss: torch.Tensor | None = None
    """A MoE router's auxiliary term (coefficient x load-balancing loss), included in ``loss``; set by the trainer."""


def full_logits_extra_bytes(micro_batch_size: int, tokens: int, vocab_size: int) -> int:
    """Peak memory of the full-logit loss per micro-batch, which the chunked loss avoids: 3 x 4 bytes x B x T x V."""
    return FULL_LOGIT_FLOAT32_BUFFERS * FLOAT32_BYTES * micro_batch_size * tokens * vocab_size


def upcast_half(tensor: torch.Tensor) -> torch.Tensor:
    """fp16/bf16 -> fp32 for a stable softmax (as transformers' own causal-LM loss does); fp32/fp64 unchanged."""
    return tensor.float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor


def expected_scores_from_logits(
    score_logits: torch.Tensor, score_token_ids: torch.Tensor, score_values: torch.Tensor
) -> torch.Tensor:
    """RAIL predictor (Eq. 1/3): sum_y y * p(str(y)); p is the full-vocabulary softmax, not renormalised.

    score_logits: [N, V] logits of the positions that predict the score token.
    """
    log_probs = torch.log_softmax(upcast_half(score_logits), dim=-1)
    score_probs = log_probs.index_select(-1, score_token_ids).exp()
    return score_probs @ score_values.to(score_probs.dtype)


def cotraft_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    score_index: torch.Tensor,
    score_target: torch.Tensor,
    score_token_ids: torch.Tensor,
    score_values: torch.Tensor,
    raft_lambda: float,
    ce_normalizer: torch.Tensor | float,
    raft_normalizer: torch.Tensor | float,
) -> CoTRaftLoss:
    """CoT-RAFT loss of one micro-batch, normalised by effective-batch counts.

    logits: [B, T, V]; labels: [B, T] with the prompt and the score token set to IGNORE_INDEX;
    score_index: [B] or [B, K] index of each score token in its row (K judge rows packed in one row;
    -1: no score, contributes no squared error); score_target: y*, shaped like score_index;
    ce_normalizer / raft_normalizer: number of CE tokens / scored judge rows in the effective batch.
    Labels are shifted instead of logits, so no copy of the logits is made here.

    Memory: one log-softmax and one gather serve both terms, so backward allocates a single
    [B*T, V] gradient buffer, as plain SFT's cross-entropy does (a second gather on the logits
    for the score rows would allocate another full-size buffer).
    """
    batch_size, length, vocab_size = logits.shape
    shifted_labels = F.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX).reshape(-1)
    log_probs = torch.log_softmax(upcast_half(logits.reshape(-1, vocab_size)), dim=-1)
    labelled = shifted_labels.ne(IGNORE_INDEX)
    positions = torch.arange(batch_size * length, device=logits.device)
    row_starts = torch.arange(batch_size, device=logits.device)[:, None] * length
    score_rows = (row_starts + (score_index.view(batch_size, -1) - 1).clamp(min=0)).reshape(-1)
    flat_indices = torch.cat(
        [
            positions * vocab_size + shifted_labels.clamp(min=0),
            (score_rows[:, None] * vocab_size + score_token_ids[None, :]).reshape(-1),
        ]
    )
    picked = log_probs.reshape(-1).take(flat_indices)
    ce_sum = -torch.where(labelled, picked[: positions.numel()], torch.zeros_like(picked[:1])).sum()
    score_probs = picked[positions.numel() :].view(score_rows.numel(), -1).exp()
    expected = (score_probs @ score_values.to(score_probs.dtype)).view(score_index.shape)
    return combine_terms(ce_sum, expected, score_index, score_target, raft_lambda, ce_normalizer, raft_normalizer)


def combine_terms(
    ce_sum: torch.Tensor,
    expected: torch.Tensor,
    score_index: torch.Tensor,
    score_target: torch.Tensor,
    raft_lambda: float,
    ce_normalizer: torch.Tensor | float,
    raft_normalizer: torch.Tensor | float,
) -> CoTRaftLoss:
    """Eq. 4 from its parts, for both the full-logit and the chunked loss: the squared error of the scored
    rows (``score_index`` > 0) and the two sums, each over its effective-batch count."""
    squared_error = (expected - score_target.to(expected.dtype)).square()
    squared_error_sum = torch.where(score_index > 0, squared_error, torch.zeros_like(squared_error)).sum()
    loss = ce_sum / ce_normalizer + raft_lambda * squared_error_sum / raft_normalizer
    return CoTRaftLoss(loss, ce_sum, squared_error_sum, expected.detach())
