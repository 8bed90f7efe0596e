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

"""``CoTRaftTrainer``: LLaMA-Factory's SFT trainer with the CoT-RAFT loss, its logs and eval metrics.

Normalisation: transformers gives ``compute_loss`` a count of label tokens over the whole
gradient-accumulation window; we extend that count with the number of scored sequences and
sum both over processes, so each micro-batch contributes ``sum / effective-batch count``.
The authors' code averaged per micro-batch instead, which changes the loss with the split.
"""

from typing import Any, NamedTuple

import numpy as np
import torch
from llamafactory.train.sft.trainer import CustomSeq2SeqTrainer
from transformers import EvalPrediction
from transformers.integrations import is_deepspeed_zero3_enabled
from typing_extensions import override

from llamafactory_tract.data.score_tokens import ScoreTokens
from llamafactory_tract.extras.logging import get_logger
from llamafactory_tract.train.cotraft.chunked_loss import chunked_cotraft_loss
from llamafactory_tract.train.cotraft.final_hidden_states import (
    base_causal_lm,
    chunked_loss_blocker,
    forward_final_hidden_states,
    lm_head_parameters,
)
from llamafactory_tract.train.cotraft.loss import IGNORE_INDEX, cotraft_loss, full_logits_extra_bytes
from llamafactory_tract.train.cotraft.router_aux_loss import router_aux_loss_coef, with_router_aux_loss

LOSS_PART_KEYS = ("ce_loss", "raft_loss")
AUX_LOSS_KEY = "aux_loss"

logger = get_logger(__name__)


class EffectiveBatchCounts(NamedTuple):
    """Loss normalisers for one optimizer step, summed over micro-batches and processes."""

    ce_tokens: torch.Tensor
    scored_sequences: torch.Tensor


def count_loss_items(batches: list[dict[str, torch.Tensor]]) -> torch.Tensor:
    """[CE tokens, scored sequences] of a list of micro-batches (labels are unshifted, score already masked)."""
    ce_tokens = sum(int(batch["labels"].ne(IGNORE_INDEX).sum()) for batch in batches)
    scored = sum(int(batch["score_index"].ge(0).sum()) for batch in batches)
    return torch.tensor([ce_tokens, scored], dtype=torch.float32)


def compute_score_metrics(prediction: EvalPrediction) -> dict[str, float]:
    """Teacher-forced expected score against y*: loss parts, RMSE, Pearson r."""
    expected, target, ce_sum, ce_tokens = np.asarray(prediction.predictions, dtype=np.float64).T
    squared_error = (expected - target) ** 2
    metrics = {
        "ce_loss": float(ce_sum.sum() / max(ce_tokens.sum(), 1.0)),
        "raft_loss": float(squared_error.mean()),
        "rmse": float(np.sqrt(squared_error.mean())),
    }
    if len(expected) > 1 and expected.std() > 0 and target.std() > 0:
        metrics["pearson"] = float(np.corrcoef(expected, target)[0, 1])
    return metrics


class CoTRaftTrainer(CustomSeq2SeqTrainer):
    def __init__(self, score_tokens: ScoreTokens, raft_lambda: float, cutoff_len: int, **kwargs) -> None:
        super().__init__(**kwargs)
        # training_step must not divide by the accumulation steps: compute_loss already normalises.
        self.model_accepts_loss_kwargs = True
        self.raft_lambda = raft_lambda
        self.score_token_ids = torch.tensor(score_tokens.token_ids, dtype=torch.long)
        self.score_values = torch.tensor(score_tokens.numeric_values, dtype=torch.float32)
        self.router_aux_loss_coef = router_aux_loss_coef(self.accelerator.unwrap_model(self.model))
        self.loss_part_keys = LOSS_PART_KEYS + ((AUX_LOSS_KEY,) if self.router_aux_loss_coef is not None else ())
        self._loss_part_sums = torch.zeros(len(self.loss_part_keys), dtype=torch.float64)
        self._steps_in_loss_part_sums: set[int] = set()
        self.loss_chunk_size = self.finetuning_args.cotraft_loss_chunk_size
        self.chunked_loss = self._use_chunked_loss(self.finetuning_args.cotraft_chunked_loss, cutoff_len)

    def _use_chunked_loss(self, requested: bool, cutoff_len: int) -> bool:
        """The chunked loss where it reproduces the model's logits exactly; otherwise say why not and what it costs."""
        if not requested:
            logger.info_rank0(
                f"CoT-RAFT: chunked loss off (cotraft_chunked_loss: false). {self._full_logit_memory(cutoff_len)}"
            )
            return False
        sharded = is_deepspeed_zero3_enabled() or self.is_fsdp_enabled
        blocker = chunked_loss_blocker(self.accelerator.unwrap_model(self.model), sharded_weights=sharded)
        if blocker is None:
            logger.info_rank0(f"CoT-RAFT: chunked loss on (chunk size {self.loss_chunk_size}), no full logits.")
            return True
        logger.warning_rank0(
            f"CoT-RAFT: chunked loss off, full logits are materialised: {blocker}. "
            + self._full_logit_memory(cutoff_len)
        )
        return False

    def _full_logit_memory(self, cutoff_len: int) -> str:
        """What the full-logit loss costs at rows of cutoff_len tokens, for the start-up log."""
        batch = self.args.per_device_train_batch_size
        vocab = base_causal_lm(self.accelerator.unwrap_model(self.model)).config.get_text_config().vocab_size
        extra = full_logits_extra_bytes(batch, cutoff_len, vocab)
        return (
            f"Estimated extra memory per micro-batch: {extra / 2**30:.2f} GiB (float32 logits, log-softmax and "
            f"gradient: 3 x 4 bytes x batch {batch} x cutoff_len {cutoff_len} x vocab {vocab})."
        )

    @override
    def _get_num_items_in_batch(self, batch_samples: list, device: torch.device) -> EffectiveBatchCounts | None:
        if not batch_samples or "score_index" not in batch_samples[0]:
            return None
        counts = count_loss_items(batch_samples).to(device)
        if self.args.world_size > 1:
            counts = self.accelerator.reduce(counts, reduction="sum")
        return _as_counts(counts)

    def _loss_parts(self, model, inputs: dict[str, Any], counts: EffectiveBatchCounts | None):
        """Run the model and the loss; without counts (evaluation) the micro-batch is its own normaliser."""
        score_index = inputs.pop("score_index")
        score_target = inputs.pop("score_target")
        labels = inputs.pop("labels")
        if counts is None:
            counts = _as_counts(count_loss_items([{"labels": labels, "score_index": score_index}]).to(labels.device))
        loss_kwargs = dict(
            labels=labels,
            score_index=score_index,
            score_target=score_target,
            score_token_ids=self.score_token_ids.to(labels.device),
            score_values=self.score_values.to(labels.device),
            raft_lambda=self.raft_lambda,
            ce_normalizer=counts.ce_tokens,
            raft_normalizer=counts.scored_sequences,
        )
        if self.chunked_loss:
            unwrapped = self.accelerator.unwrap_model(model)
            hidden_states, outputs = forward_final_hidden_states(model, unwrapped, inputs)
            weight, bias = lm_head_parameters(unwrapped)
            parts = chunked_cotraft_loss(hidden_states, weight, bias, chunk_size=self.loss_chunk_size, **loss_kwargs)
        else:
            outputs = model(**inputs)
            parts = cotraft_loss(logits=outputs.logits, **loss_kwargs)
        parts = with_router_aux_loss(parts, outputs, self.router_aux_loss_coef)
        return parts, outputs, labels, score_target, counts

    @override
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        parts, outputs, _, _, counts = self._loss_parts(model, inputs, num_items_in_batch)
        loss = parts.loss
        if model.training:
            values = [parts.ce_sum / counts.ce_tokens, parts.squared_error_sum / counts.scored_sequences]
            if AUX_LOSS_KEY in self.loss_part_keys:
                values.append(parts.aux_loss)
            self._loss_part_sums += torch.stack(values).detach().double().cpu()
            self._steps_in_loss_part_sums.add(self.state.global_step)
            # DDP averages gradients over processes; the normaliser is already global.
            loss = loss * self.accelerator.num_processes
        return (loss, outputs) if return_outputs else loss

    @override
    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None, **gen_kwargs):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            parts, _, labels, score_target, _ = self._loss_parts(model, inputs, None)
        if prediction_loss_only:
            return parts.loss.detach(), None, None
        ce_tokens = labels.ne(IGNORE_INDEX).sum(dim=1).float()
        # Only sums over sequences are reported, so sharing the batch's CE sum by token count is exact.
        ce_share = ce_tokens / ce_tokens.sum().clamp(min=1.0)
        # Evaluation rows are never packed (one score per row), so [B, 1] views as [B].
        expected, target = parts.expected_scores.view(len(labels)), score_target.view(len(labels)).float()
        per_sequence = torch.stack([expected, target, parts.ce_sum.detach() * ce_share, ce_tokens], dim=1)
        return parts.loss.detach(), per_sequence, target

    @override
    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        if "loss" in logs and self._steps_in_loss_part_sums:
            sums = self._loss_part_sums.to(self.args.device)
            if self.args.world_size > 1:
                sums = self.accelerator.reduce(sums, reduction="sum")
            steps = len(self._steps_in_loss_part_sums)
            for key, value in zip(self.loss_part_keys, (sums / steps).tolist(), strict=True):
                logs[key] = round(value, 4)
            self._loss_part_sums.zero_()
            self._steps_in_loss_part_sums.clear()
        super().log(logs, *args, **kwargs)


def _as_counts(counts: torch.Tensor) -> EffectiveBatchCounts:
    counts = counts.clamp(min=1.0)
    return EffectiveBatchCounts(ce_tokens=counts[0], scored_sequences=counts[1])
