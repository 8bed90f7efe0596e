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

"""One resumable prediction loop: keyed rows in, batched model calls out, each batch stored before the next.

Evaluation, Table 3, D_self and file grading differ in what a row is and what a record holds, not in
how an interrupted run resumes. Each gives its rows with a ``RecordKey`` (where the row came from, and
a hash of what the model sees for it) and opens its predictor only when something is left to predict,
so a finished run never loads a model. Rows go longest first (less padding, and an out-of-memory error
shows at once); every batch is appended to the ``PredictionStore`` before the next starts.
"""

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from tqdm import tqdm

from llamafactory_tract.extras.logging import get_logger
from llamafactory_tract.judge.prediction_store import PredictionStore, RecordKey

logger = get_logger(__name__)

Row = TypeVar("Row")
Records = dict[RecordKey, dict[str, Any]]
BatchPredictor = Callable[[list[Row]], list[dict[str, Any]]]
"""Records for a batch of rows, in order, without their key fields (the loop adds those)."""


def predict_resumable(
    rows: Sequence[Row],
    key_of: Callable[[Row], RecordKey],
    store: PredictionStore,
    open_predictor: Callable[[], AbstractContextManager[BatchPredictor]],
    rows_per_batch: int,
    length_of: Callable[[Row], int],
    description: str,
) -> Records:
    """The record of every row: those of this configuration already in ``store``, the rest predicted now.

    ``open_predictor`` loads the model (and releases it on exit); it is entered only when a row is left.
    """
    done = store.load()
    pending = [row for row in rows if key_of(row) not in done]
    stored_rows = {key[:2] for key in done}
    edited = sum(key_of(row)[:2] in stored_rows for row in pending)
    if edited:
        logger.warning_rank0(f"{edited} rows changed since they were predicted ({description}): predicting again.")
    if pending:
        found = len(rows) - len(pending)
        logger.info_rank0(f"Predicting {len(pending)} of {len(rows)} rows ({description}; {found} in {store.path}).")
        with open_predictor() as predict:
            done.update(_predict_in_batches(pending, key_of, store, predict, rows_per_batch, length_of, description))
    else:
        logger.info_rank0(f"All {len(rows)} rows already predicted in {store.path} ({description}).")
    return {key_of(row): done[key_of(row)] for row in rows}


def _predict_in_batches(
    pending: list[Row],
    key_of: Callable[[Row], RecordKey],
    store: PredictionStore,
    predict: BatchPredictor,
    rows_per_batch: int,
    length_of: Callable[[Row], int],
    description: str,
) -> Records:
    records: Records = {}
    ordered = sorted(pending, key=lambda row: -length_of(row))
    with tqdm(total=len(ordered), desc=description, unit="row") as progress:
        for batch in _batches(ordered, rows_per_batch):
            keys = [key_of(row) for row in batch]
            new = [
                {"benchmark": key[0], "row": key[1], "input_hash": key[2], **record}
                for key, record in zip(keys, predict(batch), strict=True)
            ]
            store.append(new)
            records.update(zip(keys, new, strict=True))
            progress.update(len(batch))
    return records


def _batches(rows: list[Row], size: int) -> Iterator[list[Row]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]
