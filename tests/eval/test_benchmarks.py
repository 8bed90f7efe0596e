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

import json

import pytest

from llamafactory_tract.data.score_format import ScoreFormat
from llamafactory_tract.eval.datasets import BENCHMARKS, BenchmarkDataError, load_benchmark
from tests.helpers.inference import require_shared_file

FORMAT = ScoreFormat()


def _write(path, rows):
    path.write_text(json.dumps(rows))
    return str(path)


def test_prometheus_ground_truth_is_the_mean_of_gpt4_scores(tmp_path):
    path = _write(tmp_path / "bench.json", [{"instruction": "judge this", "gpt4_score": [4, 5, 5], "idx": 7}])
    (row,) = load_benchmark("vicuna_bench", FORMAT, path)
    assert row.ground_truth == pytest.approx(14 / 3) and row.row == 0 and row.source_id == 7


def test_malformed_rows_are_reported_with_index_and_file(tmp_path):
    rows = [
        {"instruction": "ok", "gpt4_score": [3, 3, 4]},
        {"instruction": "", "gpt4_score": [3]},
        {"instruction": "ok", "gpt4_score": []},
        {"instruction": "ok", "gpt4_score": [3, 9, 4]},
        ["not", "an", "object"],
    ]
    path = _write(tmp_path / "bad.json", rows)
    with pytest.raises(BenchmarkDataError) as error:
        load_benchmark("mt_bench", FORMAT, path)
    message = str(error.value)
    assert "bad.json" in message and "4 of 5 rows are malformed" in message
    for fragment in (
        "row 1: `instruction`",
        "row 2: `gpt4_score`",
        "row 3: score '9'",
        "row 4: expected a JSON object",
    ):
        assert fragment in message


def test_skip_malformed_keeps_valid_rows_with_their_original_index(tmp_path):
    rows = [
        {"instruction": "a", "gpt4_score": [1, 2, 3]},
        {"instruction": "b"},
        {"instruction": "c", "gpt4_score": [5]},
    ]
    loaded = load_benchmark("flask", FORMAT, _write(tmp_path / "b.json", rows), skip_malformed=True)
    assert [row.row for row in loaded] == [0, 2]


def test_feedback_bench_score_comes_from_result_marker(tmp_path):
    rows = [{"instruction": "p", "output": "Good answer. [RESULT] 4"}, {"instruction": "q", "output": "no score here"}]
    path = tmp_path / "fb.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows))
    with pytest.raises(BenchmarkDataError, match=r"row 1: `output` must end with '\[RESULT\] <score>'"):
        load_benchmark("feedback_bench", FORMAT, str(path))
    (row,) = load_benchmark("feedback_bench", FORMAT, str(path), limit=1)
    assert row.ground_truth == 4.0


def test_unreadable_files_and_unknown_benchmarks_fail_clearly(tmp_path):
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"instruction": "a"}\n{oops\n')
    with pytest.raises(BenchmarkDataError, match="broken.jsonl: line 2 is not valid JSON"):
        load_benchmark("feedback_bench", FORMAT, str(broken))
    with pytest.raises(BenchmarkDataError, match="does not exist"):
        load_benchmark("mt_bench", FORMAT, str(tmp_path / "missing.json"))
    with pytest.raises(BenchmarkDataError, match="Unknown benchmark 'vicuna'"):
        load_benchmark("vicuna", FORMAT, str(broken))


def test_registry_names_hub_sources_for_all_table2_benchmarks():
    table2 = {"feedback_bench", "flask", "vicuna_bench", "mt_bench"}
    assert set(BENCHMARKS) == table2 | {f"{name}_authors" for name in table2}
    assert BENCHMARKS["feedback_bench"].hub_source == "prometheus-eval/Feedback-Bench"
    assert BENCHMARKS["flask"].hub_source.endswith("eval/benchmark/data/flask_eval.json")
    assert "/prometheus-eval/dcfb44272d5d" in BENCHMARKS["flask"].hub_source, "pinned to a commit"
    authors = BENCHMARKS["feedback_bench_authors"]
    assert authors.hub_source.endswith(
        "d223302/TRACT/dcb7a649a899274f2c072f7884dc94ad77a6ea19/inference/data/feedback_collection_ood_test.json"
    )
    assert authors.title == BENCHMARKS["feedback_bench"].title and authors.clean_instruction


def test_authors_files_scalar_scores_and_instruction_clean_up(tmp_path):
    """The authors' OOD Feedback Bench file has one `gpt4_score` number; their loader strips the prompt's tail."""
    rows = [
        {"instruction": 'Judge.\n###Feedback: ",  ', "gpt4_score": 4},
        {"instruction": "Judge.\n###Feedback: ", "gpt4_score": "2"},
        {"instruction": "Judge.\n###Feedback: ", "gpt4_score": [3, 4]},
        {"instruction": "Judge.", "gpt4_score": True},
    ]
    path = _write(tmp_path / "feedback_collection_ood_test.json", rows)
    loaded = load_benchmark("feedback_bench_authors", FORMAT, path, skip_malformed=True)
    assert [(row.instruction, row.ground_truth) for row in loaded] == [
        ("Judge.\n###Feedback:", 4.0),
        ("Judge.\n###Feedback:", 2.0),
        ("Judge.\n###Feedback:", 3.5),
    ]
    (kept,) = load_benchmark("vicuna_bench", FORMAT, _write(tmp_path / "v.json", rows[1:2]))
    assert kept.instruction == "Judge.\n###Feedback: ", "prometheus-eval benchmarks keep the prompt as written"
    with pytest.raises(BenchmarkDataError, match=r"row 3: `gpt4_score` must be a score or a non-empty list"):
        load_benchmark("feedback_bench_authors", FORMAT, path)


@pytest.mark.parametrize(
    "name, file",
    [
        (name, file)
        for base, file in (("vicuna_bench", "vicuna_eval.json"), ("mt_bench", "mt_bench_eval.json"))
        for name in (base, f"{base}_authors")
    ],
)
def test_real_prometheus_files_load_completely(name, file):
    rows = load_benchmark(name, FORMAT, str(require_shared_file(file)))
    assert len(rows) == 320
    assert all(1.0 <= row.ground_truth <= 5.0 for row in rows)
    assert len(load_benchmark(name, FORMAT, str(require_shared_file(file)), limit=5)) == 5
