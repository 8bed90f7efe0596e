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

"""Keep the paper's effective batch on any number of devices.

LLaMA-Factory starts one process per device by itself (torchrun), so a recipe written for one
GPU with ``gradient_accumulation_steps: 8`` silently trains with batch 8 x N on N GPUs.
``cotraft_effective_batch_size`` states the batch instead; the accumulation follows from the
per-device batch and the world size, or the run stops saying what to set.
"""

from typing import TYPE_CHECKING

from llamafactory_tract.extras.errors import TractUserError
from llamafactory_tract.extras.logging import get_logger

if TYPE_CHECKING:
    from transformers import Seq2SeqTrainingArguments

    from llamafactory_tract.hparams.finetuning_args import TractFinetuningArguments

logger = get_logger(__name__)


class EffectiveBatchError(TractUserError):
    """The requested effective batch cannot be split over this per-device batch and world size."""


def gradient_accumulation_for(effective_batch: int, per_device_batch: int, world_size: int) -> int:
    """Accumulation steps so that per_device_batch x steps x world_size == effective_batch."""
    if effective_batch % world_size:
        raise EffectiveBatchError(
            f"cotraft_effective_batch_size={effective_batch} cannot be split over {world_size} processes: "
            f"run on a number of devices that divides {effective_batch}, or change cotraft_effective_batch_size."
        )
    per_process = effective_batch // world_size
    if per_process % per_device_batch:
        raise EffectiveBatchError(
            f"cotraft_effective_batch_size={effective_batch} over {world_size} processes is {per_process} rows per "
            f"process, not a multiple of per_device_train_batch_size={per_device_batch}: set "
            f"per_device_train_batch_size to a divisor of {per_process} (e.g. 1)."
        )
    return per_process // per_device_batch


def derived_gradient_accumulation(
    training_args: "Seq2SeqTrainingArguments", finetuning_args: "TractFinetuningArguments"
) -> int | None:
    """The accumulation that ``cotraft_effective_batch_size`` asks for on this world size (None: key unset)."""
    effective = finetuning_args.cotraft_effective_batch_size
    if effective is None:
        return None
    per_device, world_size = training_args.per_device_train_batch_size, training_args.world_size
    steps = gradient_accumulation_for(effective, per_device, world_size)
    if training_args.gradient_accumulation_steps not in (1, steps):
        raise EffectiveBatchError(
            f"gradient_accumulation_steps={training_args.gradient_accumulation_steps} contradicts "
            f"cotraft_effective_batch_size={effective} ({per_device} per device x {world_size} processes needs "
            f"{steps}): unset gradient_accumulation_steps, it is derived."
        )
    logger.info_rank0(
        f"Effective batch {effective} = {per_device} per device x {steps} accumulation steps x {world_size} processes."
    )
    return steps
