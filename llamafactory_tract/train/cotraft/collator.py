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

"""Batching for ``cotraft``: LLaMA-Factory's SFT collator plus the score positions and targets."""

from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import torch
from llamafactory.data import SFTDataCollatorWith4DAttentionMask

NO_SCORE = -1


@dataclass
class CoTRaftDataCollator(SFTDataCollatorWith4DAttentionMask):
    """Pads like the SFT collator and adds ``score_index`` / float32 ``score_target``, both [batch, K].

    K is 1 for plain rows; a row packed with ``neat_packing`` carries one score per judge row in it,
    and rows with fewer are filled with ``NO_SCORE`` (no squared error). Indices are shifted by left
    padding. The score fields are added after the parent call so they are not cast to the compute
    dtype (a bf16 target would lose precision for non-integer scores).

    With ``neat_packing`` only the training rows are packed (a list of scores each); evaluation rows
    stay single and are collated as without packing. LLaMA-Factory's collator would otherwise treat
    them as packed: under FlashAttention-2 it asserts a batch of 1 and drops the padding mask.
    """

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        packed = any(isinstance(feature["score_index"], (list, tuple)) for feature in features)
        lengths = [len(feature["input_ids"]) for feature in features]
        score_index = [_as_list(feature.pop("score_index")) for feature in features]
        score_target = [_as_list(feature.pop("score_target")) for feature in features]
        collator = self if packed or not self.neat_packing else self._unpacked_rows_collator
        batch = SFTDataCollatorWith4DAttentionMask.__call__(collator, features)
        padded_length = batch["input_ids"].size(1)
        width = max(len(indices) for indices in score_index)
        shifted, targets = [], []
        for indices, values, length in zip(score_index, score_target, lengths, strict=True):
            offset = padded_length - length if self.tokenizer.padding_side == "left" else 0
            filler = width - len(indices)
            shifted.append([index + offset if index >= 0 else NO_SCORE for index in indices] + [NO_SCORE] * filler)
            targets.append(list(values) + [0.0] * filler)
        batch["score_index"] = torch.tensor(shifted, dtype=torch.long)
        batch["score_target"] = torch.tensor(targets, dtype=torch.float32)
        return batch

    @cached_property
    def _unpacked_rows_collator(self) -> "CoTRaftDataCollator":
        """This collator without ``neat_packing``: padded rows, a 2D padding mask, any batch size."""
        return replace(self, neat_packing=False, block_diag_attn=False)


def _as_list(value: int | float | list) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]
