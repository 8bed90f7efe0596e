"""Tokenise a ``cotraft`` dataset, then report (or refuse) the rows that cannot be trained on.

Invalid rows are found during preprocessing, never at step N of a long run: each is dropped and
counted with its row number and reason, or, with ``cotraft_strict_data``, the run stops here
with the full list.
"""

from collections import Counter
from typing import TYPE_CHECKING, Union

from llamafactory.extras import logging

from .data_processor import INVALID_REASON_COLUMN, ROW_COLUMN, TRUNCATED_COLUMN, CoTRaftDatasetProcessor
from .score_tokens import ScoreTokens

if TYPE_CHECKING:
    from datasets import Dataset, IterableDataset
    from llamafactory.data.template import Template
    from llamafactory.hparams import DataArguments
    from transformers import PreTrainedTokenizer, ProcessorMixin, Seq2SeqTrainingArguments

logger = logging.get_logger(__name__)

MAX_REPORTED_ROWS = 10


class InvalidTrainingData(ValueError):
    """Raised in strict mode when rows of the dataset cannot be trained on."""


def describe_invalid_rows(dataset_label: str, rows: list[int], reasons: list[str], total: int) -> str:
    """One readable paragraph: count, reasons by frequency, and the first offending rows."""
    counts = Counter(reasons)
    by_reason = "; ".join(f"{count} x {reason}" for reason, count in counts.most_common())
    first = ", ".join(f"row {row}: {reason}" for row, reason in list(zip(rows, reasons))[:MAX_REPORTED_ROWS])
    return f"{len(rows)} of {total} rows of {dataset_label} are invalid ({by_reason}). First: {first}."


def preprocess_cotraft_dataset(
    dataset: Union["Dataset", "IterableDataset"],
    data_args: "DataArguments",
    training_args: "Seq2SeqTrainingArguments",
    template: "Template",
    tokenizer: "PreTrainedTokenizer",
    processor: "ProcessorMixin | None",
    score_tokens: ScoreTokens,
    strict: bool,
    is_eval: bool,
) -> Union["Dataset", "IterableDataset"]:
    """LLaMA-Factory's ``_get_preprocessed_dataset`` for the ``cotraft`` stage, with row validation."""
    dataset_processor = CoTRaftDatasetProcessor(
        template=template, tokenizer=tokenizer, processor=processor, data_args=data_args, score_tokens=score_tokens
    )
    column_names = list(next(iter(dataset)).keys())
    kwargs = {}
    if not data_args.streaming:
        kwargs = dict(
            num_proc=data_args.preprocessing_num_workers,
            load_from_cache_file=(not data_args.overwrite_cache) or (training_args.local_process_index != 0),
            desc="Running cotraft tokenizer on dataset",
        )
    dataset = dataset.map(
        dataset_processor.preprocess_dataset,
        batched=True,
        with_indices=True,
        batch_size=data_args.preprocessing_batch_size,
        remove_columns=column_names,
        **kwargs,
    )
    names = data_args.eval_dataset if is_eval and data_args.eval_dataset else data_args.dataset
    dataset_label = "dataset " + ",".join(names or ["?"]) + (" (eval)" if is_eval else "")
    if not data_args.streaming:
        dataset = _report_and_drop_invalid(dataset, dataset_label, strict)
    dataset = dataset.remove_columns([ROW_COLUMN, INVALID_REASON_COLUMN, TRUNCATED_COLUMN])

    if training_args.should_log:
        try:
            print("eval example:" if is_eval else "training example:")
            dataset_processor.print_data_example(next(iter(dataset)))
        except StopIteration:
            raise RuntimeError(f"No valid cotraft sample left in {dataset_label}; see the report above.") from None
    return dataset


def _report_and_drop_invalid(dataset: "Dataset", dataset_label: str, strict: bool) -> "Dataset":
    reasons = dataset[INVALID_REASON_COLUMN]
    invalid = [index for index, reason in enumerate(reasons) if reason]
    truncated = sum(dataset[TRUNCATED_COLUMN])
    if truncated:
        logger.warning_rank0(f"{dataset_label}: {truncated} prompts were shortened in the middle to fit cutoff_len.")
    if not invalid:
        logger.info_rank0(f"{dataset_label}: all {len(reasons)} rows are valid cotraft examples.")
        return dataset

    rows = dataset.select(invalid)[ROW_COLUMN]
    message = describe_invalid_rows(dataset_label, rows, [reasons[index] for index in invalid], len(reasons))
    if strict:
        raise InvalidTrainingData(message + " (`cotraft_strict_data: true`; fix the rows or unset it to drop them)")
    logger.warning_rank0(f"Dropped invalid rows: {message}")
    invalid_set = set(invalid)
    return dataset.select([index for index in range(len(reasons)) if index not in invalid_set])
