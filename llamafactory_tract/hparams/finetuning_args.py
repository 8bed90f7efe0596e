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

"""The TRACT training keys, as an extension of LLaMA-Factory's ``FinetuningArguments``.

Subclassing (rather than a separate dataclass) keeps LLaMA-Factory's five-tuple of parsed
arguments intact, so every LLaMA-Factory code path keeps working, and puts our keys in
``llamafactory-cli train -h``. The keys that shape the data are in ``data_args.py``.
"""

from dataclasses import dataclass, field
from typing import Literal

from llamafactory.hparams.finetuning_args import FinetuningArguments

from llamafactory_tract.extras.constants import DEFAULT_CHUNK_SIZE
from llamafactory_tract.extras.errors import TractUserError
from llamafactory_tract.hparams.coercion import coerce_own_fields
from llamafactory_tract.hparams.cotraft_checks import check_cotraft_losses

COTRAFT_STAGE = "cotraft"


@dataclass
class TractFinetuningArguments(FinetuningArguments):
    stage: Literal["pt", "sft", "rm", "ppo", "dpo", "kto", "cotraft"] = field(
        default="sft",
        metadata={"help": "Which stage will be performed in training (`cotraft`: CoT-RAFT, llamafactory-tract)."},
    )
    raft_lambda: float = field(
        default=1.0,
        metadata={"help": "[cotraft] Weight lambda of the squared-error (RAFT) term of the CoT-RAFT loss."},
    )
    cotraft_chunked_loss: bool = field(
        default=True,
        metadata={
            "help": "[cotraft] Compute the loss from the final hidden states in chunks, never materialising the "
            "full sequence x vocabulary logits (falls back, with a log line, where the model's logits are not a "
            "plain lm_head(hidden), e.g. softcapping, or the head is sharded by ZeRO-3/FSDP)."
        },
    )
    cotraft_loss_chunk_size: int = field(
        default=DEFAULT_CHUNK_SIZE,
        metadata={"help": "[cotraft] Labelled tokens per chunk of the chunked loss (one chunk x vocab buffer)."},
    )
    cotraft_effective_batch_size: int | None = field(
        default=None,
        metadata={
            "help": "Effective batch (per-device batch x accumulation x processes) to keep on any number of devices: "
            "gradient_accumulation_steps is derived from it and the world size (leave it unset)."
        },
    )

    def __post_init__(self) -> None:
        coerce_own_fields(self, TractFinetuningArguments)
        super().__post_init__()
        if self.raft_lambda < 0:
            raise TractUserError(f"`raft_lambda` must be >= 0, got {self.raft_lambda}.")
        if self.cotraft_loss_chunk_size < 1:
            raise TractUserError(f"`cotraft_loss_chunk_size` must be >= 1, got {self.cotraft_loss_chunk_size}.")
        if self.cotraft_effective_batch_size is not None and self.cotraft_effective_batch_size < 1:
            raise TractUserError(
                f"`cotraft_effective_batch_size` must be >= 1, got {self.cotraft_effective_batch_size}."
            )
        if self.stage == COTRAFT_STAGE and (self.use_mca or self.use_hyper_parallel):
            raise TractUserError(
                "Stage `cotraft` runs on LLaMA-Factory's trainer: unset `use_mca`/`use_hyper_parallel`."
            )
        if self.stage == COTRAFT_STAGE:
            check_cotraft_losses(self)
