"""Batching for ``cotraft``: LLaMA-Factory's SFT collator plus the score position and target."""

from dataclasses import dataclass
from typing import Any

import torch
from llamafactory.data import SFTDataCollatorWith4DAttentionMask


@dataclass
class CoTRaftDataCollator(SFTDataCollatorWith4DAttentionMask):
    """Pads like the SFT collator and adds ``score_index`` (shifted by left padding) and float32 ``score_target``.

    The score fields are added after the parent call so they are not cast to the compute dtype
    (a bf16 target would lose precision for non-integer scores).
    """

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        lengths = [len(feature["input_ids"]) for feature in features]
        score_index = [feature.pop("score_index") for feature in features]
        score_target = [feature.pop("score_target") for feature in features]
        batch = super().__call__(features)
        padded_length = batch["input_ids"].size(1)
        offsets = [padded_length - length if self.tokenizer.padding_side == "left" else 0 for length in lengths]
        shifted = [index + offset if index >= 0 else -1 for index, offset in zip(score_index, offsets, strict=True)]
        batch["score_index"] = torch.tensor(shifted, dtype=torch.long)
        batch["score_target"] = torch.tensor(score_target, dtype=torch.float32)
        return batch
