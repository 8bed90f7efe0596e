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

"""``run_cotraft``: the ``stage: cotraft`` workflow, shaped like LLaMA-Factory's ``run_sft``."""

from typing import TYPE_CHECKING

from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
from llamafactory.extras.constants import IGNORE_INDEX
from llamafactory.extras.ploting import plot_loss
from llamafactory.model import load_model, load_tokenizer
from llamafactory.train.callbacks import LogCallback
from llamafactory.train.trainer_utils import create_modelcard_and_push

from llamafactory_tract.data.judge_card import JudgeCard
from llamafactory_tract.data.score_format import score_format_of
from llamafactory_tract.data.score_tokens import ScoreTokens, resolve_score_tokens
from llamafactory_tract.extras.logging import get_logger
from llamafactory_tract.hparams.finetuning_args import COTRAFT_STAGE
from llamafactory_tract.train.cotraft.callbacks import TractLogCallback
from llamafactory_tract.train.cotraft.collator import CoTRaftDataCollator
from llamafactory_tract.train.cotraft.trainer import LOSS_PART_KEYS, CoTRaftTrainer, compute_score_metrics

if TYPE_CHECKING:
    from llamafactory.data import Template
    from llamafactory.data.data_utils import DatasetModule
    from llamafactory.hparams import GeneratingArguments, ModelArguments
    from llamafactory.model.loader import TokenizerModule
    from transformers import PreTrainedModel, Seq2SeqTrainingArguments, TrainerCallback

    from llamafactory_tract.hparams.data_args import TractDataArguments
    from llamafactory_tract.hparams.finetuning_args import TractFinetuningArguments

logger = get_logger(__name__)

EVAL_METRIC_KEYS = ("loss", *LOSS_PART_KEYS, "rmse", "pearson")


def load_cotraft_dataset(
    template: "Template",
    tokenizer_module: "TokenizerModule",
    model_args: "ModelArguments",
    data_args: "TractDataArguments",
    training_args: "Seq2SeqTrainingArguments",
) -> tuple[ScoreTokens, "DatasetModule"]:
    """Resolve the score tokens (a configuration error surfaces here, before the model loads), then tokenise.

    LLaMA-Factory's ``get_dataset`` builds the ``cotraft`` processor from ``data_args`` (see ``patches/``).
    """
    tokenizer = tokenizer_module["tokenizer"]
    score_tokens = resolve_score_tokens(
        template, tokenizer, score_format_of(data_args), with_cot=not data_args.cotraft_drop_cot
    )
    token_pieces = dict(
        zip(
            score_tokens.score_format.values,
            tokenizer.convert_ids_to_tokens(list(score_tokens.token_ids)),
            strict=True,
        )
    )
    logger.info_rank0(f"CoT-RAFT: delimiter {data_args.score_delimiter!r}, score tokens {token_pieces}")
    dataset_module = get_dataset(
        template, model_args, data_args, training_args, stage=COTRAFT_STAGE, **tokenizer_module
    )
    return score_tokens, dataset_module


def adopt_log_callbacks(callbacks: list["TrainerCallback"] | None) -> list["TrainerCallback"]:
    """The callbacks LLaMA-Factory gave the stage, its ``LogCallback`` extended to log our loss parts."""
    callbacks = list(callbacks or [])
    for callback in callbacks:
        if type(callback) is LogCallback:
            TractLogCallback.adopt(callback)
    return callbacks


def build_data_collator(
    template: "Template",
    tokenizer_module: "TokenizerModule",
    model: "PreTrainedModel",
    model_args: "ModelArguments",
    data_args: "TractDataArguments",
    training_args: "Seq2SeqTrainingArguments",
) -> CoTRaftDataCollator:
    """The collator as LLaMA-Factory's ``run_sft`` builds it, with the attention the loaded model uses."""
    return CoTRaftDataCollator(
        template=template,
        model=model,
        pad_to_multiple_of=8 if training_args.do_train else None,
        label_pad_token_id=IGNORE_INDEX,
        block_diag_attn=model_args.block_diag_attn,
        neat_packing=data_args.neat_packing,
        attn_implementation=getattr(model.config, "_attn_implementation", None),
        compute_dtype=model_args.compute_dtype,
        **tokenizer_module,
    )


def judge_card(model_args: "ModelArguments", data_args: "TractDataArguments") -> JudgeCard:
    """What the judge commands must use with this model: its base model, template, score format, prompt rules."""
    return JudgeCard(
        base_model=model_args.model_name_or_path,
        template=data_args.template,
        score_delimiter=data_args.score_delimiter,
        score_values=score_format_of(data_args).values,
        score_only_prompt=data_args.score_only_prompt,
        remove_reference=data_args.remove_reference,
    )


def run_cotraft(
    model_args: "ModelArguments",
    data_args: "TractDataArguments",
    training_args: "Seq2SeqTrainingArguments",
    finetuning_args: "TractFinetuningArguments",
    generating_args: "GeneratingArguments",
    callbacks: list["TrainerCallback"] | None = None,
) -> None:
    logger.info_rank0(f"CoT-RAFT: raft_lambda={finetuning_args.raft_lambda}")
    tokenizer_module = load_tokenizer(model_args)
    template = get_template_and_fix_tokenizer(tokenizer_module["tokenizer"], data_args)
    score_tokens, dataset_module = load_cotraft_dataset(
        template, tokenizer_module, model_args, data_args, training_args
    )
    tokenizer = tokenizer_module["tokenizer"]
    model = load_model(tokenizer, model_args, finetuning_args, training_args.do_train)

    data_collator = build_data_collator(template, tokenizer_module, model, model_args, data_args, training_args)
    trainer = CoTRaftTrainer(
        model=model,
        args=training_args,
        finetuning_args=finetuning_args,
        data_collator=data_collator,
        callbacks=adopt_log_callbacks(callbacks),
        score_tokens=score_tokens,
        raft_lambda=finetuning_args.raft_lambda,
        cutoff_len=data_args.cutoff_len + int(data_args.packing),  # LLaMA-Factory lowers it by 1 when packing
        compute_metrics=compute_score_metrics,
        **dataset_module,
        **tokenizer_module,
    )

    if training_args.do_train:
        train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
        trainer.save_model()
        if trainer.is_world_process_zero():
            judge_card(model_args, data_args).save(training_args.output_dir)
        trainer.log_metrics("train", train_result.metrics)
        trainer.save_metrics("train", train_result.metrics)
        trainer.save_state()
        if trainer.is_world_process_zero() and finetuning_args.plot_loss:
            eval_dataset = dataset_module.get("eval_dataset")
            eval_names = list(eval_dataset) if isinstance(eval_dataset, dict) else [""] if eval_dataset else []
            eval_keys = [
                f"eval_{name}_{key}" if name else f"eval_{key}" for name in eval_names for key in EVAL_METRIC_KEYS
            ]
            plot_loss(training_args.output_dir, keys=["loss", *trainer.loss_part_keys, *eval_keys])

    if training_args.do_eval:
        metrics = trainer.evaluate(metric_key_prefix="eval")
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)

    create_modelcard_and_push(trainer, model_args, data_args, training_args, finetuning_args)
