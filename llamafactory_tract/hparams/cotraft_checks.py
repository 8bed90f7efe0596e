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
Options that still work but cost more than the user asked for are reported here too, at start-up.
"""

from typing import TYPE_CHECKING

from llamafactory_tract.extras.errors import TractUserError
from llamafactory_tract.extras.logging import get_logger

if TYPE_CHECKING:
    from llamafactory.hparams import DataArguments, FinetuningArguments, ModelArguments
    from transformers import Seq2SeqTrainingArguments

logger = get_logger(__name__)

FLASH_ATTN_INSTALL = "pip install flash-attn --no-build-isolation"
# LLaMA-Factory's SFT trainer replaces the token CE through `compute_loss_func` for these keys;
# `cotraft` computes its own loss and never calls it.
ALTERNATIVE_SFT_LOSSES = {
    "use_dft_loss": "DFT",
    "use_eaft_loss": "EAFT",
    "use_asft_loss": "ASFT (with its reference model)",
}


def check_cotraft_arguments(
    model_args: "ModelArguments", data_args: "DataArguments", training_args: "Seq2SeqTrainingArguments"
) -> None:
    """Raise with the reason and the alternative for an option ``cotraft`` cannot honour."""
    if model_args.enable_liger_kernel and training_args.device.type == "cpu":
        raise TractUserError(
            "`enable_liger_kernel` needs a GPU: Liger's kernels are Triton programs, which do not run on CPU "
            "(not even in Triton's interpreter). Unset it; the chunked CoT-RAFT loss needs no kernel of its own."
        )
    if data_args.packing and not data_args.neat_packing:
        raise TractUserError(
            "Stage `cotraft` does not support `packing` without `neat_packing`: plainly packed rows attend to each "
            "other, so each judge row's score distribution would be conditioned on the other rows of its pack "
            "(inference sees one row). Set `neat_packing: true` (block-diagonal attention, one score per judge row)."
        )
    if data_args.train_on_prompt or data_args.mask_history:
        raise TractUserError(
            "Stage `cotraft` trains on the CoT and score of the single response; `train_on_prompt` and "
            "`mask_history` are not supported."
        )
    if training_args.predict_with_generate or training_args.do_predict:
        raise TractUserError("Stage `cotraft` does not generate; use `tract eval` to score with CoT-RAIL.")
    if _flash_attention_2_requested(model_args):
        _check_packed_flash_attention_batch(data_args, training_args)
        _warn_if_flash_attention_2_falls_back(data_args)


def check_cotraft_losses(finetuning_args: "FinetuningArguments") -> None:
    """Refuse LLaMA-Factory's alternative SFT losses: ``cotraft`` would silently train with CoT-RAFT instead."""
    for key, name in ALTERNATIVE_SFT_LOSSES.items():
        if getattr(finetuning_args, key, False):
            raise TractUserError(
                f"Stage `cotraft` does not support `{key}`: LLaMA-Factory applies the {name} loss through the SFT "
                f"trainer's `compute_loss_func`, which the CoT-RAFT loss (CE + raft_lambda x squared error, paper "
                f"Eq. 4) replaces, so it would be ignored. Unset `{key}`."
            )


def _flash_attention_2_requested(model_args: "ModelArguments") -> bool:
    return str(model_args.flash_attn) == "fa2"


def _check_packed_flash_attention_batch(data_args: "DataArguments", training_args: "Seq2SeqTrainingArguments") -> None:
    """FA2 packing (position ids restart, no mask) takes one packed row per micro-batch (LLaMA-Factory asserts it)."""
    if data_args.neat_packing and training_args.per_device_train_batch_size != 1:
        raise TractUserError(
            f"`neat_packing` with `flash_attn: fa2` trains one packed row (of cutoff_len tokens) per micro-batch, "
            f"but per_device_train_batch_size={training_args.per_device_train_batch_size}: set "
            "`per_device_train_batch_size: 1` (with `cotraft_effective_batch_size` the accumulation follows). "
            "Evaluation rows are not packed and may use any `per_device_eval_batch_size`."
        )


def _warn_if_flash_attention_2_falls_back(data_args: "DataArguments") -> None:
    """Say what LLaMA-Factory's silent fallback from FA2 costs, and how to install it."""
    from transformers.utils import is_flash_attn_2_available, is_torch_npu_available

    if is_flash_attn_2_available() or is_torch_npu_available():  # LLaMA-Factory's own test
        return
    tokens = data_args.cutoff_len + 1  # a packed row: LLaMA-Factory lowers cutoff_len by 1 when packing
    cost = (
        f"with `neat_packing` every packed row gets a dense block-diagonal {tokens} x {tokens} attention mask, and "
        f"attention runs over all {tokens} x {tokens} position pairs of the pack (SDPA has no flash kernel for an "
        "explicit mask), where FA2's variable-length kernel computes each judge row's own block only"
        if data_args.neat_packing
        else "attention without FlashAttention-2's kernel (slower, more memory on long rows)"
    )
    logger.warning_rank0(
        "`flash_attn: fa2` is set but FlashAttention-2 is not available here (the `flash_attn` package does not "
        "import, or there is no CUDA device): LLaMA-Factory falls back to transformers' default attention (SDPA). "
        f"Cost: {cost}. "
        f"Install it with `{FLASH_ATTN_INSTALL}`."
    )
