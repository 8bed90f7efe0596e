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

"""Rows per second of the ``cotraft`` processor against LLaMA-Factory's supervised processor, same rows."""

import statistics
import time
from typing import Any


def converted_examples(rows: list[dict[str, str]]) -> dict[str, list[Any]]:
    """The batch layout LLaMA-Factory's converter hands to processors (plus our row-origin columns)."""
    from llamafactory_tract.data.row_origin import ORIGIN_DATASET_COLUMN, ORIGIN_ROW_COLUMN

    count = len(rows)
    return {
        "_prompt": [[{"role": "user", "content": row["instruction"]}] for row in rows],
        "_response": [[{"role": "assistant", "content": row["output"]}] for row in rows],
        "_system": [""] * count,
        "_tools": [""] * count,
        "_images": [None] * count,
        "_videos": [None] * count,
        "_audios": [None] * count,
        ORIGIN_DATASET_COLUMN: ["judge"] * count,
        ORIGIN_ROW_COLUMN: list(range(count)),
    }


def measure_preprocessing(
    tokenizer_dir: str, template_name: str, rows: list[dict[str, str]], cutoff_len: int, repeats: int
) -> dict[str, Any]:
    """Median rows/s over ``repeats`` alternating passes of each processor over the same rows."""
    from llamafactory.data import get_template_and_fix_tokenizer
    from llamafactory.data.processor import SupervisedDatasetProcessor
    from transformers import AutoTokenizer

    from llamafactory_tract.data.processor import INVALID_REASON_COLUMN, CoTRaftDatasetProcessor
    from llamafactory_tract.hparams.data_args import TractDataArguments

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    data_args = TractDataArguments(template=template_name, cutoff_len=cutoff_len)
    template = get_template_and_fix_tokenizer(tokenizer, data_args)
    common = dict(template=template, tokenizer=tokenizer, processor=None, data_args=data_args)
    processors = {
        "supervised": SupervisedDatasetProcessor(**common),
        "cotraft": CoTRaftDatasetProcessor(**common),
    }
    examples = converted_examples(rows)
    invalid = [
        reason for reason in processors["cotraft"].preprocess_dataset(examples)[INVALID_REASON_COLUMN] if reason
    ]
    if invalid:
        raise RuntimeError(f"{len(invalid)} benchmark rows were rejected by the cotraft processor: {invalid[:3]}")
    rates: dict[str, list[float]] = {name: [] for name in processors}
    for _ in range(repeats):
        for name, processor in processors.items():
            start = time.perf_counter()
            processor.preprocess_dataset(examples)
            rates[name].append(len(rows) / (time.perf_counter() - start))
    medians = {name: statistics.median(values) for name, values in rates.items()}
    return {
        "rows": len(rows),
        "rows_per_s": medians,
        "all_rows_per_s": rates,
        "ratio_cotraft_over_supervised": medians["cotraft"] / medians["supervised"],
    }
