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

"""Remember where each training row came from, so bad rows are reported as ``dataset:row``.

LLaMA-Factory merges, shuffles and splits datasets before tokenisation; the original row
number is recorded right after loading so reports point at the row in the user's file (for a
streaming dataset: its position in the stream).
"""

from typing import TYPE_CHECKING, Any, Union

from datasets import Dataset

if TYPE_CHECKING:
    from datasets import IterableDataset

ORIGIN_DATASET_COLUMN = "tract_dataset"
ORIGIN_ROW_COLUMN = "tract_row"


def tag_row_origin(dataset: Union["Dataset", "IterableDataset"], name: str) -> Union["Dataset", "IterableDataset"]:
    def tag(example: dict[str, Any], index: int) -> dict[str, Any]:
        return {ORIGIN_DATASET_COLUMN: name, ORIGIN_ROW_COLUMN: index}

    progress = {"desc": f"Recording row numbers of {name}"} if isinstance(dataset, Dataset) else {}
    return dataset.map(tag, with_indices=True, **progress)
