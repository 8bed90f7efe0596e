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

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datasets import Dataset


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
