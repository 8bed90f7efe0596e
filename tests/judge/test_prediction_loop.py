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

"""The one resumable prediction loop: order, batching, storing per batch, resuming, no model when done."""

from contextlib import contextmanager

import pytest

from llamafactory_tract.judge.prediction_loop import predict_resumable
from llamafactory_tract.judge.prediction_store import PredictionStore, input_hash

ROWS = ["a", "bbbb", "cc", "ddd", "eeeee"]


class CountingPredictor:
    """Predicts the length of each text; counts how often it was opened and which batches it saw."""

    def __init__(self, fail_on_batch: int | None = None) -> None:
        self.opened, self.batches, self.fail_on_batch = 0, [], fail_on_batch

    @contextmanager
    def open(self):
        self.opened += 1

        def predict(batch: list[str]) -> list[dict]:
            if len(self.batches) == self.fail_on_batch:
                raise KeyboardInterrupt  # as a Ctrl-C in the middle of a run
            self.batches.append(batch)
            return [{"score": float(len(text))} for text in batch]

        yield predict


def run(store: PredictionStore, predictor: CountingPredictor, rows: list[str] = ROWS):
    """Each text is keyed by its position and its content, as a benchmark row is."""
    return predict_resumable(
        rows, lambda text: ("letters", rows.index(text), input_hash(text)), store, predictor.open, 2, len, "test"
    )


def test_rows_go_longest_first_in_batches_and_come_back_in_input_order(tmp_path):
    predictor = CountingPredictor()
    records = run(PredictionStore(tmp_path / "p.jsonl", "config"), predictor)
    assert predictor.batches == [["eeeee", "bbbb"], ["ddd", "cc"], ["a"]]
    assert [record["row"] for record in records.values()] == [0, 1, 2, 3, 4]
    assert [record["score"] for record in records.values()] == [1.0, 4.0, 2.0, 3.0, 5.0]
    assert all(record["benchmark"] == "letters" and record["input_hash"] for record in records.values())


def test_an_interrupted_run_keeps_its_stored_batches_and_resumes_with_the_rest(tmp_path):
    store = PredictionStore(tmp_path / "p.jsonl", "config")
    with pytest.raises(KeyboardInterrupt):
        run(store, CountingPredictor(fail_on_batch=1))
    assert len(store.load()) == 2
    resumed = CountingPredictor()
    records = run(store, resumed)
    assert resumed.batches == [["ddd", "cc"], ["a"]]
    assert [record["score"] for record in records.values()] == [1.0, 4.0, 2.0, 3.0, 5.0]


def test_a_finished_run_opens_no_predictor_and_an_edited_row_or_other_config_is_predicted_again(tmp_path):
    path = tmp_path / "p.jsonl"
    run(PredictionStore(path, "config"), CountingPredictor())
    again = CountingPredictor()
    run(PredictionStore(path, "config"), again)
    assert again.opened == 0
    edited = CountingPredictor()
    run(PredictionStore(path, "config"), edited, rows=[*ROWS[:4], "EEEEE"])  # row 4's content changed
    assert edited.batches == [["EEEEE"]]
    other = CountingPredictor()
    run(PredictionStore(path, "another config"), other)
    assert sum(len(batch) for batch in other.batches) == len(ROWS)
