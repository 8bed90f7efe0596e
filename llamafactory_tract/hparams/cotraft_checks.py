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

"""Options that LLaMA-Factory allows for SFT but that would silently break ``stage: cotraft``.

Checked when the training arguments are parsed (``patches/`` calls this before LLaMA-Factory's own
checks, which then treat ``cotraft`` like the SFT-shaped stage it is, so ``neat_packing`` passes).
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llamafactory.hparams import DataArguments, ModelArguments
    from transformers import Seq2SeqTrainingArguments


def check_cotraft_arguments(
    model_args: "ModelArguments", data_args: "DataArguments", training_args: "Seq2SeqTrainingArguments"
) -> None:
    """Raise with the reason and the alternative for an option ``cotraft`` cannot honour."""
    if model_args.enable_liger_kernel and training_args.device.type == "cpu":
        raise ValueError(
            "`enable_liger_kernel` needs a GPU: Liger's kernels are Triton programs, which do not run on CPU "
            "(not even in Triton's interpreter). Unset it; the chunked CoT-RAFT loss needs no kernel of its own."
        )
    if data_args.packing and not data_args.neat_packing:
        raise ValueError(
            "Stage `cotraft` does not support `packing` without `neat_packing`: plainly packed rows attend to each "
            "other, so each judge row's score distribution would be conditioned on the other rows of its pack "
            "(inference sees one row). Set `neat_packing: true` (block-diagonal attention, one score per judge row)."
        )
    if data_args.train_on_prompt or data_args.mask_history:
        raise ValueError(
            "Stage `cotraft` trains on the CoT and score of the single response; `train_on_prompt` and "
            "`mask_history` are not supported."
        )
    if training_args.predict_with_generate or training_args.do_predict:
        raise ValueError("Stage `cotraft` does not generate; use `tract eval` to score with CoT-RAIL.")
