"""Remember where each training row came from, so bad rows are reported as ``dataset:row``.

LLaMA-Factory merges, shuffles and splits datasets before tokenisation; the original row
number is recorded right after loading so reports point at the row in the user's file.
"""

from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    from datasets import Dataset, IterableDataset

ORIGIN_DATASET_COLUMN = "tract_dataset"
ORIGIN_ROW_COLUMN = "tract_row"


def tag_row_origin(dataset: Union["Dataset", "IterableDataset"], name: str) -> Union["Dataset", "IterableDataset"]:
    def tag(example: dict[str, Any], index: int) -> dict[str, Any]:
        return {ORIGIN_DATASET_COLUMN: name, ORIGIN_ROW_COLUMN: index}

    return dataset.map(tag, with_indices=True, desc=f"Recording row numbers of {name}")
