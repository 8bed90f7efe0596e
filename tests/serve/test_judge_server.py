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

"""``tract serve`` over real HTTP: a server process started on a free port, concurrent clients, bad bodies.

The same rows graded by the Python API, by ``tract judge`` and by the server (same judge settings,
same seed) get the same CoTs and expected scores, whichever micro-batch the server put them in.
"""

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from llamafactory_tract.cli import main
from llamafactory_tract.judge.api import TractJudge
from llamafactory_tract.judge.prompts import absolute_prompt
from llamafactory_tract.serve.app import ServeConfig, create_app
from tests.helpers.judge import FAMILY, ROWS, RUBRIC, settings_overrides, tiny_judge
from tests.helpers.server import free_port, wait_until_healthy

START_TIMEOUT_S = 180


@pytest.fixture(scope="module")
def served(tiny_model_dirs, tmp_path_factory):
    """(server URL, the same judge in-process, its grades of ROWS); the judge loads while the server starts."""
    model_dir, template = tiny_model_dirs[FAMILY]
    url = f"http://127.0.0.1:{free_port()}"
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    limits = ["max_wait_ms=50", "max_items_per_request=4", "max_n_cot=3"]
    command = [sys.executable, "-m", "llamafactory_tract.cli", "serve", *settings_overrides(model_dir, template)]
    with log.open("w") as handle:
        process = subprocess.Popen([*command, f"port={url.rsplit(':', 1)[1]}", *limits], stdout=handle, stderr=handle)
    try:
        judge = tiny_judge(model_dir, template)
        reference = _api_grades(judge, ROWS)
        wait_until_healthy(url, process, log, START_TIMEOUT_S)
        yield url, judge, reference
    finally:
        process.terminate()
        process.wait(timeout=30)


def _api_grades(judge, rows, **options):
    return judge.absolute_grade(
        instructions=[row["instruction"] for row in rows],
        responses=[row["response"] for row in rows],
        rubric=RUBRIC,
        reference_answers=[row["reference_answer"] for row in rows],
        **options,
    )


def _item(row: dict, index: int) -> dict:
    return {**row, "rubric": RUBRIC, "id": f"row-{index}"}


def test_concurrent_requests_are_batched_and_match_the_python_api(served):
    url, _, reference = served
    bodies = [{"items": [_item(row, index)]} for index, row in enumerate(ROWS)] * 2
    bodies.append({"items": [_item(row, index) for index, row in enumerate(ROWS)]})
    batches_before = httpx.get(f"{url}/health").json()["batches"]
    with httpx.Client(base_url=url, timeout=120) as client, ThreadPoolExecutor(len(bodies)) as pool:
        responses = list(pool.map(lambda body: client.post("/v1/grade", json=body), bodies))
    assert [response.status_code for response in responses] == [200] * len(bodies)
    for body, response in zip(bodies, responses, strict=True):
        grades = response.json()["grades"]
        assert [grade["id"] for grade in grades] == [item["id"] for item in body["items"]]
        for item, grade in zip(body["items"], grades, strict=True):
            expected = reference[int(item["id"].removeprefix("row-"))]
            assert grade["cots"] == expected.cots
            assert grade["score"] == pytest.approx(expected.score, abs=1e-5)
            assert grade["score_probs"][0] == pytest.approx(expected.score_probs[0], abs=1e-6)
            assert grade["decoded_score"] == expected.decoded_score
    health = httpx.get(f"{url}/health").json()
    assert health["status"] == "ok" and health["pending_rows"] == 0
    assert health["batches"] - batches_before < len(bodies)  # concurrent requests shared micro-batches


def test_three_entry_points_give_the_same_expected_scores(served, tmp_path, capsys):
    url, judge, reference = served
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({**row, "rubric": RUBRIC}) + "\n" for row in ROWS))
    output = tmp_path / "grades.jsonl"
    model_dir, template = judge.config.model_name_or_path, judge.config.template
    assert main(["judge", *settings_overrides(model_dir, template), f"input={rows}", f"output={output}"]) == 0
    from_cli = [json.loads(line)["score"] for line in output.read_text().splitlines()]
    body = {"items": [_item(row, index) for index, row in enumerate(ROWS)]}
    from_server = [grade["score"] for grade in httpx.post(f"{url}/v1/grade", json=body, timeout=120).json()["grades"]]
    from_api = [grade.score for grade in reference]
    assert from_cli == pytest.approx(from_api, abs=1e-5) and from_server == pytest.approx(from_api, abs=1e-5)
    # Per-request settings: another seed and one CoT, as the API gives them.
    other = httpx.post(f"{url}/v1/grade", json={**body, "n_cot": 1, "seed": 5}, timeout=120).json()
    expected = _api_grades(judge, ROWS, n_cot=1, seed=5)
    assert other["n_cot"] == 1 and other["seed"] == 5
    assert [grade["cots"] for grade in other["grades"]] == [grade.cots for grade in expected]
    assert [grade["score"] for grade in other["grades"]] == pytest.approx(
        [grade.score for grade in expected], abs=1e-5
    )


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ("{not json", 422, "JSON decode error"),
        ({"items": [{"instruction": "q", "rubric": "r"}]}, 422, "response"),
        ({"items": [{"instruction": "  ", "response": "a", "rubric": "r"}]}, 422, "instruction"),
        ({"items": [{"instruction": "q", "response": "a", "rubric": {"criteria": "c"}}]}, 422, "score1_description"),
        ({"items": [{"instruction": "q", "response": "a", "rubric": "r", "score": 3}]}, 422, "Extra inputs"),
        ({"items": []}, 422, "at least 1 item"),
        ({"items": [{"instruction": "q", "response": "a", "rubric": "r"}] * 5}, 413, "at most 4"),
        ({"items": [{"instruction": "q", "response": "a", "rubric": "r"}], "n_cot": 4}, 422, "max_n_cot=3"),
        ({"items": [{"instruction": "q", "response": "a", "rubric": "r"}], "n_cot": 0}, 422, "greater than or equal"),
        ({"items": [{"instruction": "q", "response": "a", "rubric": "r"}], "seed": "42"}, 422, "valid integer"),
        ({"items": [{"instruction": "q", "response": "a", "rubric": "r"}], "seed": 42.0}, 422, "valid integer"),
        ({"items": [{"instruction": "q", "response": "a", "rubric": "r"}], "n_cot": "2"}, 422, "valid integer"),
    ],
)
def test_malformed_requests_are_refused_with_a_message(served, body, status, message):
    url = served[0]
    content = body if isinstance(body, str) else json.dumps(body)
    response = httpx.post(f"{url}/v1/grade", content=content, headers={"content-type": "application/json"})
    assert response.status_code == status
    assert message in response.text
    assert httpx.get(f"{url}/health").status_code == 200


def test_a_body_sent_without_the_json_content_type_gets_a_hint(served):
    body = json.dumps({"items": [{"instruction": "q", "response": "a", "rubric": "r"}]})
    response = httpx.post(
        f"{served[0]}/v1/grade", content=body, headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 422
    assert "content-type: application/json" in response.json()["hint"]
    sent_as_json = httpx.post(f"{served[0]}/v1/grade", json={"items": [{"instruction": "q"}]})
    assert sent_as_json.status_code == 422 and "hint" not in sent_as_json.json()


def test_relative_grades_over_http_equal_the_python_api_and_health_counts_truncated_prompts(served):
    url, judge, _ = served
    items = [
        {
            "instruction": row["instruction"],
            "response_a": row["response"],
            "response_b": "No idea.",
            "rubric": RUBRIC,
            "id": index,
        }
        for index, row in enumerate(ROWS)
    ]
    response = httpx.post(f"{url}/v1/relative_grade", json={"items": items}, timeout=120)
    assert response.status_code == 200, response.text
    expected = judge.relative_grade(
        instructions=[row["instruction"] for row in ROWS],
        responses_a=[row["response"] for row in ROWS],
        responses_b=["No idea."] * len(ROWS),
        rubric=RUBRIC,
    )
    for grade, pair in zip(response.json()["grades"], expected, strict=True):
        found = [grade[key] for key in ("p_a_better", "p_tie", "p_b_better", "score_difference")]
        assert found == pytest.approx([pair.p_a_better, pair.p_tie, pair.p_b_better, pair.score_difference], abs=1e-5)
        assert grade["grade_a"]["cots"] == pair.grade_a.cots and grade["grade_b"]["prompt_truncated"] is False
    missing = httpx.post(f"{url}/v1/relative_grade", json={"items": [{**items[0], "response_b": " "}]})
    assert missing.status_code == 422 and "response_b" in missing.text
    assert httpx.get(f"{url}/health").json()["prompts_truncated"] == 0


def test_a_score_only_server_grades_rewritten_prompts_and_refuses_an_unrewritable_item(tiny_model_dirs):
    from fastapi.testclient import TestClient

    model_dir, template = tiny_model_dirs[FAMILY]
    overrides = [*settings_overrides(model_dir, template), "predictor=rail", "score_only_prompt=true"]
    config = ServeConfig.model_validate(dict(item.split("=", 1) for item in [*overrides, "remove_reference=true"]))
    judge = TractJudge.from_config(config.judge_only())
    row = ROWS[0]
    with TestClient(create_app(judge, config)) as client:
        health = client.get("/health").json()
        assert health["score_only_prompt"] and health["remove_reference"]
        grade = client.post("/v1/grade", json={"items": [_item(row, 0)]}).json()["grades"][0]
        # The reference header in a rubric after the rubric header: no way to tell where the reference ends.
        bad = {"instruction": "q", "response": "a", "rubric": "Helpful?\n###Reference Answer: none"}
        refused = client.post("/v1/grade", json={"items": [_item(row, 0), bad]})
    prompt = absolute_prompt(row["instruction"], row["response"], RUBRIC, row["reference_answer"])
    assert grade["score_probs"] == judge.grade_prompts([prompt])[0].score_probs
    assert judge.judge_prompt(prompt) != prompt
    assert refused.status_code == 422 and "items[1]" in refused.text and "###Reference Answer" in refused.text
