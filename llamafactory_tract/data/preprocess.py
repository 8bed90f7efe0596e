"""Tokenise a ``cotraft`` dataset, then report (or refuse) the rows that cannot be trained on.

Invalid rows are found during preprocessing, never at step N of a long run: each is dropped and
counted with its row number and reason, or, with ``cotraft_strict_data``, the run stops here
with the full list.
"""

from collections import Counter
from typing import TYPE_CHECKING, Union

from llamafactory_tract.data.processor import INVALID_REASON_COLUMN, TRUNCATED_COLUMN, CoTRaftDatasetProcessor
from llamafactory_tract.data.row_origin import ORIGIN_DATASET_COLUMN, ORIGIN_ROW_COLUMN
from llamafactory_tract.data.score_tokens import ScoreTokens
from llamafactory_tract.extras.logging import get_logger

if TYPE_CHECKING:
    from datasets import Dataset, IterableDataset
    from llamafactory.data.template import Template
    from llamafactory.hparams import DataArguments
    from transformers import PreTrainedTokenizer, ProcessorMixin, Seq2SeqTrainingArguments

logger = get_logger(__name__)

MAX_REPORTED_ROWS = 10


class InvalidTrainingData(ValueError):
    """Raised in strict mode when rows of the dataset cannot be trained on."""


def describe_invalid_rows(origins: list[tuple[str, int]], reasons: list[str], total: int, split: str) -> str:
    """One readable paragraph: count, reasons by frequency, and the first offending rows (0-based)."""
    counts = Counter(reasons)
    by_reason = "; ".join(f"{count} x {reason}" for reason, count in counts.most_common())
    ordered = sorted(zip(origins, reasons, strict=True))[:MAX_REPORTED_ROWS]
    first = "; ".join(f"dataset '{name}' row {row}: {reason}" for (name, row), reason in ordered)
    return f"{len(reasons)} of {total} {split} rows are invalid ({by_reason}). First (0-based rows): {first}."


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
    score_in_ce: bool = False,
) -> Union["Dataset", "IterableDataset"]:
    """LLaMA-Factory's ``_get_preprocessed_dataset`` for the ``cotraft`` stage, with row validation."""
    dataset_processor = CoTRaftDatasetProcessor(
        template=template,
        tokenizer=tokenizer,
        processor=processor,
        data_args=data_args,
        score_tokens=score_tokens,
        score_in_ce=score_in_ce,
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
        batch_size=data_args.preprocessing_batch_size,
        remove_columns=column_names,
        **kwargs,
    )
    split = "evaluation" if is_eval else "training"
    if not data_args.streaming:
        dataset = _report_and_drop_invalid(dataset, split, strict)
    dataset = dataset.remove_columns(
        [ORIGIN_DATASET_COLUMN, ORIGIN_ROW_COLUMN, INVALID_REASON_COLUMN, TRUNCATED_COLUMN]
    )

    if training_args.should_log:
        try:
            print("eval example:" if is_eval else "training example:")
            dataset_processor.print_data_example(next(iter(dataset)))
        except StopIteration:
            raise RuntimeError(f"No valid cotraft {split} sample left; see the report above.") from None
    return dataset


def _report_and_drop_invalid(dataset: "Dataset", split: str, strict: bool) -> "Dataset":
    reasons = dataset[INVALID_REASON_COLUMN]
    invalid = [index for index, reason in enumerate(reasons) if reason]
    truncated = sum(dataset[TRUNCATED_COLUMN])
    if truncated:
        logger.warning_rank0(f"{truncated} {split} prompts were shortened in the middle to fit cutoff_len.")
    if not invalid:
        logger.info_rank0(f"All {len(reasons)} {split} rows are valid cotraft examples.")
        return dataset

    bad = dataset.select(invalid)
    origins = list(zip(bad[ORIGIN_DATASET_COLUMN], bad[ORIGIN_ROW_COLUMN], strict=True))
    message = describe_invalid_rows(origins, bad[INVALID_REASON_COLUMN], len(reasons), split)
    if strict:
        raise InvalidTrainingData(message + " (`cotraft_strict_data: true`; fix the rows or unset it to drop them)")
    logger.warning_rank0(f"Dropped invalid rows: {message}")
    invalid_set = set(invalid)
    return dataset.select([index for index in range(len(reasons)) if index not in invalid_set])
