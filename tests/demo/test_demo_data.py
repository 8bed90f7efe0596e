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

"""``tract demo``'s data: downloaded from a (local) HTTP server, verified, cached; a named folder wins."""

import functools
import http.server
import shutil
import threading
from pathlib import Path

import pytest

from llamafactory_tract.demo import data_files
from llamafactory_tract.demo.data_files import SHA256, DemoDataError, demo_data_dir, sha256_of
from tests.helpers.inference import require_shared_file


class CountingHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        CountingHandler.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def served(tmp_path):
    """A folder served over HTTP on localhost, holding copies of the real Prometheus files."""
    root = tmp_path / "served"
    root.mkdir()
    for name in SHA256:
        shutil.copyfile(require_shared_file(name), root / name)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(CountingHandler, directory=root))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    CountingHandler.requests = []
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_downloads_verifies_and_caches(served, tmp_path, monkeypatch):
    monkeypatch.delenv(data_files.DATA_DIR_ENV, raising=False)
    _, url = served
    cache = tmp_path / "cache"
    folder = demo_data_dir(None, cache_dir=cache, base_url=url)
    assert folder.is_relative_to(cache)
    assert {name: sha256_of(folder / name) for name in SHA256} == SHA256
    assert sorted(CountingHandler.requests) == sorted(f"/{name}" for name in SHA256)
    assert demo_data_dir(None, cache_dir=cache, base_url=url) == folder
    assert len(CountingHandler.requests) == len(SHA256), "a second run reads the cache"
    assert not list(folder.glob("*.partial"))


def test_checksum_mismatch_is_an_error_and_nothing_is_cached(served, tmp_path, monkeypatch):
    monkeypatch.delenv(data_files.DATA_DIR_ENV, raising=False)
    root, url = served
    (root / "mt_bench_eval.json").write_text('[{"instruction": "tampered"}]')
    cache = tmp_path / "cache"
    with pytest.raises(DemoDataError, match=r"mt_bench_eval\.json: SHA-256 [0-9a-f]{64} does not match the expected"):
        demo_data_dir(None, cache_dir=cache, base_url=url)
    assert not list(cache.rglob("mt_bench_eval.json*"))


def test_a_corrupted_cache_is_downloaded_again(served, tmp_path, monkeypatch):
    monkeypatch.delenv(data_files.DATA_DIR_ENV, raising=False)
    _, url = served
    cache = tmp_path / "cache"
    folder = demo_data_dir(None, cache_dir=cache, base_url=url)
    (folder / "vicuna_eval.json").write_text("truncated")
    demo_data_dir(None, cache_dir=cache, base_url=url)
    assert sha256_of(folder / "vicuna_eval.json") == SHA256["vicuna_eval.json"]
    assert CountingHandler.requests.count("/vicuna_eval.json") == 2


def test_unreachable_source_says_how_to_work_offline(tmp_path, monkeypatch):
    monkeypatch.delenv(data_files.DATA_DIR_ENV, raising=False)
    with pytest.raises(DemoDataError, match=r"Could not download .*--data-dir \(or set TRACT_SHARED_DATA\)"):
        demo_data_dir(None, cache_dir=tmp_path, base_url="http://127.0.0.1:9/")


def test_named_folder_or_environment_is_used_without_download(tmp_path, monkeypatch):
    local = tmp_path / "local"
    local.mkdir()
    for name in SHA256:
        (local / name).write_text("[]")
    unreachable = "http://127.0.0.1:9/"
    assert demo_data_dir(local, cache_dir=tmp_path / "cache", base_url=unreachable) == local
    monkeypatch.setenv(data_files.DATA_DIR_ENV, str(local))
    assert demo_data_dir(None, cache_dir=tmp_path / "cache", base_url=unreachable) == local
    (local / "vicuna_eval.json").unlink()
    with pytest.raises(DemoDataError, match=r"vicuna_eval\.json not found in .*local"):
        demo_data_dir(Path(local), cache_dir=tmp_path / "cache", base_url=unreachable)


def test_demo_table_reports_the_delimiter_fraction_per_run(tmp_path):
    from llamafactory_tract.demo.run import delimiter_fraction, self_generation_endings

    closed_by = {"mt_bench": {"delimiter": 12, "eos": 1, "max_new_tokens": 3}}
    assert delimiter_fraction(closed_by) == "12 of 16 (75%); closed by force: eos: 1, max_new_tokens: 3"
    assert delimiter_fraction({"mt_bench": {"delimiter": 4}}) == "4 of 4 (100%)"
    d_self = tmp_path / "d_self.jsonl"
    assert self_generation_endings(d_self).startswith("no summary at")
    (tmp_path / "d_self.jsonl.summary.json").write_text('{"closed_by": {"max_new_tokens": 24}}')
    assert self_generation_endings(d_self) == "0 of 24 (0%); closed by force: max_new_tokens: 24"


def test_tract_demo_without_data_names_the_folder_and_the_way_out(tmp_path, capsys):
    from llamafactory_tract.cli import main

    assert main(["demo", "--data-dir", str(tmp_path), "--run-root", str(tmp_path / "run")]) == 2
    assert "vicuna_eval.json, mt_bench_eval.json not found in" in capsys.readouterr().err


def _prometheus_record(question: str, response: str, scores: list[int]) -> dict:
    instruction = (
        f"###Task Description:\n...\n\n###The instruction to evaluate:\n{question}\n\n###Response to evaluate:\n"
        f"{response}\n\n###Score Rubrics:\n[r]\n\n###Feedback: "
    )
    return {"instruction": instruction, "gpt4_score": scores}


def test_demo_rows_cover_every_score_level_shortest_first_in_file_order():
    from llamafactory_tract.demo.row_selection import first_score_level, level_balanced, mean_score_level

    # Levels by the first score: 5, 5, 5, 1, 4, 5, 4, 2; responses of growing length except where noted.
    firsts = [5, 5, 5, 1, 4, 5, 4, 2]
    records = [_prometheus_record(f"q{i}", "x" * (10 * (8 - i)), [first, 1, 1]) for i, first in enumerate(firsts)]
    # One per level in turn (1, 2, 4, 5), the shortest prompt of each level first: 3, 7, 6, 5; then 4, 2.
    chosen = level_balanced(records, 6, first_score_level)
    assert [records.index(record) for record in chosen] == [2, 3, 4, 5, 6, 7]
    assert [first_score_level(record) for record in level_balanced(records, 3, first_score_level)] == [1, 4, 2]
    assert len(level_balanced(records, 20, first_score_level)) == 8
    # The evaluation label is the mean of the three scores, rounded half up.
    assert [mean_score_level({"gpt4_score": scores}) for scores in ([2, 3, 3], [2, 2, 3], [4, 5, 5], [1, 1, 1])] == [
        3,
        2,
        5,
        1,
    ]


def test_demo_evaluation_leaves_out_questions_it_trained_on():
    from llamafactory_tract.demo.row_selection import held_out

    trained = [_prometheus_record("What is 2+2?", "4", [5, 5, 5])]
    candidates = [
        _prometheus_record("What is 2+2?", "five", [1, 1, 1]),
        _prometheus_record("Name a prime.", "7", [5, 5, 5]),
    ]
    kept, dropped = held_out(candidates, trained)
    assert kept == candidates[1:] and dropped == 1


def test_the_demo_files_share_no_question_and_the_demo_rows_are_balanced(tmp_path):
    import json

    from llamafactory_tract.demo.row_selection import level_counts, mean_score_level, question_of
    from llamafactory_tract.demo.run import prepare_annotation_dataset, prepare_evaluation_file

    vicuna, mt_bench = require_shared_file("vicuna_eval.json"), require_shared_file("mt_bench_eval.json")
    data_dir, trained = prepare_annotation_dataset(vicuna, tmp_path, 48)
    assert {record["gpt4_score"][0] for record in trained} == {1, 2, 3, 4, 5}
    evaluation = json.loads(prepare_evaluation_file(mt_bench, trained, 40, tmp_path / "eval.json").read_text())
    assert level_counts(evaluation, mean_score_level) == "1: 8, 2: 8, 3: 8, 4: 8, 5: 8"
    assert not {question_of(record) for record in evaluation} & {question_of(record) for record in trained}
    assert len((data_dir / "vicuna_cot.jsonl").read_text().splitlines()) == 48
