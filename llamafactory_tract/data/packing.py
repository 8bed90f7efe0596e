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

"""``neat_packing`` for ``cotraft``: LLaMA-Factory packs the validated rows, we carry each row's score along.

The rows are first encoded and validated one by one (so invalid rows are reported by dataset and
row as without packing); LLaMA-Factory's own packed-supervised processor then packs them (its
knapsack, padding, restarting ``position_ids`` and per-row attention-mask indices, which its
collator turns into a block-diagonal mask). It does not know the score positions, so each packed
segment is matched back to its encoded row by content and gets that row's score index, shifted by
the segment's start: a packed row carries one score index and one target per judge row in it.
"""

from collections import defaultdict, deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Union

from llamafactory.extras.constants import IGNORE_INDEX

from llamafactory_tract.extras.logging import get_logger

if TYPE_CHECKING:
    from datasets import Dataset, IterableDataset
    from transformers import Seq2SeqTrainingArguments

    from llamafactory_tract.hparams.data_args import TractDataArguments

logger = get_logger(__name__)

PackFunction = Callable[[dict[str, list[Any]]], dict[str, list[Any]]]
"""Encoded rows (``input_ids``, ``labels``, ``images``, ...) -> LLaMA-Factory's packed rows."""


def segments(attention_mask: list[int]) -> list[tuple[int, int]]:
    """[start, end) of each packed row: runs of one ``neat_packing`` index (1, 2, ...); 0 is padding."""
    bounds, start = [], 0
    for position in range(1, len(attention_mask) + 1):
        if position == len(attention_mask) or attention_mask[position] != attention_mask[start]:
            if attention_mask[start] != 0:
                bounds.append((start, position))
            start = position
    return bounds


def attach_scores(encoded: dict[str, list[Any]], packed: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """``packed`` with ``score_index`` / ``score_target`` lists: one entry per judge row, in packing order."""
    by_content: dict[tuple[int, ...], deque[tuple[int, float]]] = defaultdict(deque)
    for input_ids, index, target in zip(
        encoded["input_ids"], encoded["score_index"], encoded["score_target"], strict=True
    ):
        by_content[tuple(input_ids)].append((index, target))
    packed["score_index"], packed["score_target"] = [], []
    for input_ids, labels, attention_mask in zip(
        packed["input_ids"], packed["labels"], packed["attention_mask"], strict=True
    ):
        indices, targets = [], []
        for start, end in segments(attention_mask):
            if labels[start] != IGNORE_INDEX:
                raise ValueError(f"a packed judge row starts with a trained token at {start}: its prompt is missing")
            index, target = by_content[tuple(input_ids[start:end])].popleft()
            indices.append(start + index)
            targets.append(target)
        packed["score_index"].append(indices)
        packed["score_target"].append(targets)
    if any(by_content.values()):
        raise ValueError("LLaMA-Factory's packing dropped judge rows that were valid (longer than cutoff_len?)")
    return packed


def pack_judge_rows(
    dataset: Union["Dataset", "IterableDataset"],
    pack: PackFunction,
    data_args: "TractDataArguments",
    training_args: "Seq2SeqTrainingArguments",
) -> Union["Dataset", "IterableDataset"]:
    """The validated, encoded ``cotraft`` rows packed into rows of ``cutoff_len`` tokens by ``pack``."""
    from datasets import Dataset

    def pack_batch(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        return attach_scores(batch, pack(batch))

    kwargs: dict[str, Any] = {}
    if isinstance(dataset, Dataset):
        kwargs = dict(
            num_proc=data_args.preprocessing_num_workers,
            load_from_cache_file=(not data_args.overwrite_cache) or (training_args.local_process_index != 0),
            desc="Packing cotraft rows (neat_packing)",
        )
    columns = list(next(iter(dataset)).keys())
    packed = dataset.map(
        pack_batch, batched=True, batch_size=data_args.preprocessing_batch_size, remove_columns=columns, **kwargs
    )
    if isinstance(dataset, Dataset):
        logger.info_rank0(f"neat_packing: {len(dataset)} judge rows packed into {len(packed)} rows.")
    return packed
