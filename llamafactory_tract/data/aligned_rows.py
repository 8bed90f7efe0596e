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

"""A training set's rows as LLaMA-Factory reads them, before tokenisation, for the steps that judge them.

D_self generation and Table 3 need the prompts and responses training sees (hub or file, any response
form, with each row's dataset and position), without a model or template: LLaMA-Factory's own loader
and aligner under ``stage: cotraft``, stopped before the processor.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llamafactory_tract.data.row_origin import ORIGIN_DATASET_COLUMN, ORIGIN_ROW_COLUMN

if TYPE_CHECKING:
    from datasets import Dataset


@dataclass(frozen=True)
class JudgeRow:
    """One aligned training row: a one-turn judge prompt and its response, with where it came from."""

    dataset: str
    row: int
    messages: list[dict[str, Any]]
    system: str | None
    response: str

    @property
    def origin(self) -> str:
        return f"dataset '{self.dataset}' row {self.row}"


def read_aligned_rows(dataset: str, dataset_dir: str, limit: int | None, output_dir: str) -> "Dataset":
    """Rows of ``_prompt``/``_response``/``_system`` with ``tract_dataset``/``tract_row``; ``limit``: max_samples."""
    from llamafactory.hparams import get_train_args

    from llamafactory_tract.compat.llamafactory_internals import merged_dataset

    model_args, data_args, training_args, _, _ = get_train_args(
        dict(
            model_name_or_path="unused-for-loading-data",
            template="empty",
            stage="cotraft",
            dataset=dataset,
            dataset_dir=dataset_dir,
            output_dir=output_dir,
            max_samples=limit,
            report_to="none",
        )
    )
    return merged_dataset(model_args, data_args, training_args, stage="cotraft")


def one_turn_rows(rows: "Dataset") -> tuple[list[JudgeRow], list[str]]:
    """The rows with one prompt turn and one response, and ``"<origin>: <reason>"`` for each other row."""
    kept, skipped = [], []
    for example in rows:
        dataset, row = example[ORIGIN_DATASET_COLUMN], example[ORIGIN_ROW_COLUMN]
        if len(example["_prompt"]) != 1 or len(example["_response"]) != 1:
            skipped.append(f"dataset '{dataset}' row {row}: expected a one-turn prompt with one response")
            continue
        response = example["_response"][0]["content"]
        kept.append(JudgeRow(dataset, row, example["_prompt"], example["_system"] or None, response))
    return kept, skipped
