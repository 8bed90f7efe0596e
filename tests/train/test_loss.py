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

"""The CoT-RAFT loss as a pure function: hand-computed value, autograd, batch-split invariance."""

import math

import torch

from llamafactory_tract.train.cotraft.loss import IGNORE_INDEX, cotraft_loss, expected_scores_from_logits

SCORE_IDS = torch.tensor([3, 4, 5, 6, 7])
SCORE_VALUES = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])


def test_hand_computed_example():
    # One sequence [p, c, s, e]: prompt p, CoT token c, score token s (id 6 = "4"), end token e (id 2).
    vocab = 8
    logits = torch.zeros(1, 4, vocab)
    logits[0, 0, 1] = math.log(3.0)  # predicts c=1: p(c) = 3 / (3 + 7) = 0.3
    logits[0, 1, 6] = math.log(5.0)  # predicts the score: p("4") = 5/12, p(others) = 1/12 each
    logits[0, 2, 2] = math.log(7.0)  # predicts e=2: p(e) = 7 / 14 = 0.5
    labels = torch.tensor([[IGNORE_INDEX, 1, IGNORE_INDEX, 2]])  # score token masked out of CE
    parts = cotraft_loss(
        logits, labels, torch.tensor([2]), torch.tensor([5.0]), SCORE_IDS, SCORE_VALUES, 0.5, 2.0, 1.0
    )
    expected_score = (1 + 2 + 3 + 5) / 12 + 4 * 5 / 12
    assert math.isclose(parts.expected_scores.item(), expected_score, rel_tol=1e-6)
    ce = -math.log(0.3) - math.log(0.5)
    assert math.isclose(parts.ce_sum.item(), ce, rel_tol=1e-6)
    assert math.isclose(parts.loss.item(), ce / 2 + 0.5 * (expected_score - 5) ** 2, rel_tol=1e-6)


def test_full_vocabulary_softmax_is_not_renormalised():
    logits = torch.zeros(1, 10)
    # 5 of 10 tokens are scores: each has probability 0.1, so the expected score is 0.1 * 15.
    assert torch.allclose(expected_scores_from_logits(logits, SCORE_IDS, SCORE_VALUES), torch.tensor([1.5]))


def _random_batch(batch: int, length: int, vocab: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, length, vocab, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, vocab, (batch, length), generator=generator)
    lengths = torch.randint(4, length + 1, (batch,), generator=generator)
    score_index = torch.zeros(batch, dtype=torch.long)
    for row, row_length in enumerate(lengths.tolist()):
        prompt = row_length // 3
        labels[row, :prompt] = IGNORE_INDEX
        labels[row, row_length:] = IGNORE_INDEX
        score_index[row] = row_length - 2
        labels[row, row_length - 2] = IGNORE_INDEX
    targets = torch.randint(1, 6, (batch,), generator=generator).double()
    return logits, labels, score_index, targets


def test_gradient_matches_finite_differences():
    logits, labels, score_index, targets = _random_batch(2, 6, 9, seed=0)
    logits.requires_grad_(True)

    def loss_of(tensor):
        return cotraft_loss(tensor, labels, score_index, targets, SCORE_IDS, SCORE_VALUES, 1.0, 7.0, 2.0).loss

    assert torch.autograd.gradcheck(loss_of, (logits,), eps=1e-6, atol=1e-5)


def test_loss_and_gradients_do_not_depend_on_the_batch_split():
    logits, labels, score_index, targets = _random_batch(8, 12, 11, seed=1)
    ce_tokens = float(labels.ne(IGNORE_INDEX).sum())

    def run(micro_batch: int):
        leaf = logits.clone().requires_grad_(True)
        total = torch.zeros((), dtype=torch.float64)
        for start in range(0, 8, micro_batch):
            part = slice(start, start + micro_batch)
            parts = cotraft_loss(
                leaf[part], labels[part], score_index[part], targets[part], SCORE_IDS, SCORE_VALUES, 1.0, ce_tokens, 8
            )
            parts.loss.backward()
            total += parts.loss.detach()
        return total, leaf.grad

    loss_8x1, grad_8x1 = run(8)
    loss_2x4, grad_2x4 = run(2)
    assert torch.allclose(loss_8x1, loss_2x4, atol=1e-12)
    assert torch.allclose(grad_8x1, grad_2x4, atol=1e-12)


def test_rows_without_score_add_no_squared_error():
    logits, labels, _, targets = _random_batch(2, 6, 9, seed=2)
    no_score = torch.tensor([-1, -1])
    parts = cotraft_loss(logits, labels, no_score, targets, SCORE_IDS, SCORE_VALUES, 1.0, 1.0, 1.0)
    assert parts.squared_error_sum.item() == 0.0
