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

"""LLaMA-Factory 0.9.5 internals: its dataset merger, and the hook of its ``LogCallback`` that writes a log entry."""

from typing import TYPE_CHECKING, Any

from llamafactory.train.callbacks import LogCallback

if TYPE_CHECKING:
    from datasets import Dataset
    from llamafactory.hparams import DataArguments, ModelArguments
    from transformers import Seq2SeqTrainingArguments


def merged_dataset(
    model_args: "ModelArguments", data_args: "DataArguments", training_args: "Seq2SeqTrainingArguments", stage: str
) -> "Dataset":
    """The training rows loaded and aligned (``_prompt``/``_response``/...), before any processor runs."""
    from llamafactory.data.loader import _get_merged_dataset

    return _get_merged_dataset(data_args.dataset, model_args, data_args, training_args, stage=stage)


class AmendedLogCallback(LogCallback):
    """``LogCallback`` whose ``trainer_log.jsonl`` entries pass through ``amend_entry`` as they are written."""

    def amend_entry(self, logs: dict[str, Any]) -> dict[str, Any]:
        return logs

    def _write_log(self, output_dir: str, logs: dict[str, Any]) -> None:
        super()._write_log(output_dir, self.amend_entry(logs))


def extend_instance(instance: LogCallback, subclass: type[LogCallback]) -> None:
    """Turn the ``LogCallback`` LLaMA-Factory built into ``subclass`` in place, keeping the state it set up."""
    instance.__class__ = subclass
