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

"""What the full-logit loss costs when ZeRO-3/FSDP turn the chunked loss off: the estimate, and on CUDA its measure.

Torch and the loss modules only (no LLaMA-Factory), so the CUDA check runs on a bare GPU image:
``python -m pytest --noconftest -s tests/train/test_gpu_modes_train_memory.py``.
"""

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

from llamafactory_tract.train.cotraft.chunked_loss import chunked_cotraft_loss
from llamafactory_tract.train.cotraft.loss import IGNORE_INDEX, cotraft_loss, full_logits_extra_bytes

LLAMA3_VOCAB, LLAMA3_HIDDEN, CUTOFF = 128256, 4096, 3000


def test_full_logit_memory_formula():
    """Three float32 [T, V] buffers: a 3000-token Llama-3 row needs 4.6 GB (4.3 GiB) more than the chunked loss."""
    assert full_logits_extra_bytes(1, CUTOFF, LLAMA3_VOCAB) == 3 * 4 * CUTOFF * LLAMA3_VOCAB == 4_617_216_000
    assert full_logits_extra_bytes(4, CUTOFF, 32000) == 4 * full_logits_extra_bytes(1, CUTOFF, 32000)


def judge_rows(batch: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Rows of CUTOFF tokens: a 2000-token prompt, then CoT tokens, the score 5 tokens before the end."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, LLAMA3_VOCAB, (batch, CUTOFF), generator=generator)
    labels[:, :2000] = IGNORE_INDEX
    score_index = torch.full((batch, 1), CUTOFF - 5)
    labels[:, CUTOFF - 5] = IGNORE_INDEX
    return {
        "labels": labels.to(device),
        "score_index": score_index.to(device),
        "score_target": torch.full((batch, 1), 4.0, device=device),
        "score_token_ids": torch.arange(16, 21, device=device),
        "score_values": torch.arange(1.0, 6.0, device=device),
        "raft_lambda": 1.0,
        "ce_normalizer": float(labels.ne(IGNORE_INDEX).sum()),
        "raft_normalizer": float(batch),
    }


def peak_bytes(step: Callable[[], torch.Tensor]) -> int:
    """Peak CUDA memory a forward + backward allocates beyond what was allocated before it."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    step().backward()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before


@pytest.mark.skipif(not torch.cuda.is_available(), reason="measures CUDA allocations")
@pytest.mark.parametrize("batch", [1, 2])
def test_the_estimate_matches_the_measured_extra_memory_of_the_full_logit_loss(batch):
    """bf16 Llama-3-sized head; full logits as the Trainer gets them (accelerate's fp32 outputs); chunked printed."""
    device = torch.device("cuda")
    weight = torch.randn(LLAMA3_VOCAB, LLAMA3_HIDDEN, device=device, dtype=torch.bfloat16) * 0.02
    hidden = torch.randn(batch, CUTOFF, LLAMA3_HIDDEN, device=device, dtype=torch.bfloat16, requires_grad=True)
    rows = judge_rows(batch, device)

    def full() -> torch.Tensor:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = F.linear(hidden, weight)
        return cotraft_loss(logits=logits.float(), **rows).loss

    def chunked() -> torch.Tensor:
        return chunked_cotraft_loss(hidden, weight, None, **rows).loss

    full_peak, chunked_peak = peak_bytes(full), peak_bytes(chunked)
    estimate = full_logits_extra_bytes(batch, CUTOFF, LLAMA3_VOCAB)
    elements = batch * CUTOFF * LLAMA3_VOCAB
    print(
        f"batch {batch}: full-logit peak {full_peak / 2**30:.2f} GiB ({full_peak / elements:.2f} bytes per logit), "
        f"chunked peak {chunked_peak / 2**30:.2f} GiB, estimate {estimate / 2**30:.2f} GiB"
    )
    assert 0.95 * estimate <= full_peak <= 1.05 * estimate  # H200: 12.09 (batch 1) and 12.00 bytes per logit
