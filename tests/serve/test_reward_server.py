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

"""``tract serve`` as OpenRLHF's remote reward model: ``POST /get_reward`` over real HTTP.

The bodies are those OpenRLHF v0.11.0 posts (``SingleTurnAgentExecutor._fetch_rewards_via_http``): the
query decoded with special tokens from the chat-templated prompt and the response, the prompt, the label.
"""

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import yaml
from pydantic import ValidationError

from llamafactory_tract.serve.app import ServeConfig, create_app
from tests.helpers.judge import FAMILY, ROWS, RUBRIC, SETTINGS, tiny_judge
from tests.helpers.server import free_port, wait_until_healthy
from tests.serve.test_judge_server import START_TIMEOUT_S

CHATML_USER = r"<\|im_start\|>user\n(.*?)<\|im_end\|>"
OTHER_RUBRIC = "Is the response concise? Score 1 is rambling, score 5 is to the point."


def chatml_prompt(instruction: str) -> str:
    """What OpenRLHF's ``--apply_chat_template`` makes of an input, for a ChatML policy."""
    system = "<|im_start|>system\nBe helpful.<|im_end|>\n"
    return f"{system}<|im_start|>user\n{instruction}<|im_end|>\n<|im_start|>assistant\n"


def openrlhf_body(rows: list[dict], labels: list) -> dict:
    prompts = [chatml_prompt(row["instruction"]) for row in rows]
    return {
        "query": [prompt + row["response"] + "<|im_end|>" for prompt, row in zip(prompts, rows, strict=True)],
        "prompts": prompts,
        "labels": labels,
    }


@pytest.fixture(scope="module")
def served(tiny_model_dirs, tmp_path_factory):
    """(server URL, the same judge in-process); the judge loads while the server starts."""
    model_dir, template = tiny_model_dirs[FAMILY]
    folder = tmp_path_factory.mktemp("reward_serve")
    config = {
        "model_name_or_path": str(model_dir),
        "template": template,
        **SETTINGS,
        "max_wait_ms": 200,
        "max_items_per_request": 4,
        "reward_rubric": RUBRIC,
        "reward_instruction_pattern": CHATML_USER,
        "reward_response_suffixes": ["<|im_end|>"],
        "reward_prompt_end": "<|im_start|>assistant\n",
    }
    (folder / "serve.yaml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = folder / "serve.log"
    command = [sys.executable, "-m", "llamafactory_tract.cli", "serve", str(folder / "serve.yaml"), f"port={port}"]
    with log.open("w") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=handle)
    try:
        judge = tiny_judge(model_dir, template)
        wait_until_healthy(f"http://127.0.0.1:{port}", process, log, START_TIMEOUT_S)
        yield f"http://127.0.0.1:{port}", judge
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_llamafactory_ppo_reward_client_gets_the_judges_expected_scores(served):
    """LLaMA-Factory's PPO (``reward_model_type: api``) posts decoded prompt + response texts with its own
    ``get_rewards_from_server``; called here on the real server's ``/v1/score/evaluation``."""
    from llamafactory.train.ppo.ppo_utils import get_rewards_from_server

    url, judge = served
    messages = [chatml_prompt(row["instruction"]) + row["response"] + "<|im_end|>" for row in ROWS]
    scores = get_rewards_from_server(f"{url}/v1/score/evaluation", messages)
    expected = judge.absolute_grade(
        instructions=[row["instruction"] for row in ROWS], responses=[row["response"] for row in ROWS], rubric=RUBRIC
    )
    assert scores.tolist() == pytest.approx([grade.score for grade in expected], abs=1e-5)
    unsplittable = httpx.post(f"{url}/v1/score/evaluation", json={"model": "m", "messages": ["no template"]})
    assert unsplittable.status_code == 422
    assert unsplittable.json()["detail"] == "messages[0] has no reward_prompt_end '<|im_start|>assistant\\n'."


def test_get_reward_answers_openrlhf_with_the_judges_expected_scores(served):
    url, judge = served
    labels = [
        ROWS[0]["reference_answer"],
        "",
        {"rubric": OTHER_RUBRIC, "reference_answer": ROWS[2]["reference_answer"]},
    ]
    body = openrlhf_body(ROWS, labels)
    response = httpx.post(f"{url}/get_reward", json=body, timeout=120)
    assert response.status_code == 200, response.text
    answer = response.json()
    expected = judge.absolute_grade(
        instructions=[row["instruction"] for row in ROWS],
        responses=[row["response"] for row in ROWS],
        rubric=[RUBRIC, RUBRIC, OTHER_RUBRIC],
        reference_answers=[ROWS[0]["reference_answer"], None, ROWS[2]["reference_answer"]],
    )
    assert answer["rewards"] == pytest.approx([grade.score for grade in expected], abs=1e-5)
    assert answer["scores"] == pytest.approx([(grade.score - 1) / 4 for grade in expected], abs=1e-5)
    assert all(0 <= score <= 1 for score in answer["scores"])
    assert answer["extra_logs"]["decoded_score"] == [grade.decoded_score for grade in expected]

    # OpenRLHF v0.11.0 posts one query per request, concurrently: they share the server's micro-batches.
    singles = [openrlhf_body([row], [""]) for row in ROWS] + [openrlhf_body([ROWS[0]], [""])]
    batches_before = httpx.get(f"{url}/health").json()["batches"]
    with httpx.Client(base_url=url, timeout=120) as client, ThreadPoolExecutor(len(singles)) as pool:
        responses = list(pool.map(lambda single: client.post("/get_reward", json=single), singles))
    assert [response.status_code for response in responses] == [200] * len(singles)
    alone = judge.absolute_grade(
        instructions=[row["instruction"] for row in ROWS], responses=[row["response"] for row in ROWS], rubric=RUBRIC
    )
    rewards = [response.json()["rewards"][0] for response in responses]
    assert rewards == pytest.approx([grade.score for grade in [*alone, alone[0]]], abs=1e-5)
    assert httpx.get(f"{url}/health").json()["batches"] - batches_before < len(singles)


@pytest.mark.parametrize(
    ("change", "status", "message"),
    [
        ({"query": ["<|im_start|>user\nsomething else"]}, 422, "query[0] does not start with prompts[0]"),
        ({"prompts": ["Hi", "there"]}, 422, "`prompts` has 2 entries for 1 queries"),
        ({"labels": [{"rubric": {"criteria": "c"}}]}, 422, "score1_description"),
        ({"labels": [3]}, 422, "labels"),
        ({"query": ["a"] * 5, "prompts": ["a"] * 5, "labels": None}, 413, "at most 4"),
    ],
)
def test_malformed_reward_requests_are_refused_with_a_message(served, change, status, message):
    url = served[0]
    body = {**openrlhf_body(ROWS[:1], [""]), **change}
    response = httpx.post(f"{url}/get_reward", json=body, timeout=60)
    assert response.status_code == status and message in response.text


def test_reward_settings_are_checked_and_a_query_without_rubric_is_refused(served):
    from fastapi.testclient import TestClient

    judge = served[1]
    base = {"model_name_or_path": judge.config.model_name_or_path, "template": judge.config.template, **SETTINGS}
    for setting, message in [
        ({"reward_instruction_pattern": "user: .*"}, "needs a group"),
        ({"reward_instruction_pattern": "(unclosed"}, "not a regular expression"),
        ({"reward_rubric": {"criteria": "c"}}, "score1_description"),
    ]:
        with pytest.raises(ValidationError, match=message):
            ServeConfig.model_validate({**base, **setting})
    body = {"query": ["Name a fruit. An apple."], "prompts": ["Name a fruit. "], "labels": [""]}
    with TestClient(create_app(judge, ServeConfig.model_validate(base))) as client:
        refused = client.post("/get_reward", json=body)
        graded = client.post("/get_reward", json={**body, "labels": [{"rubric": RUBRIC}]})
    assert refused.status_code == 422 and "no reward_rubric" in refused.text
    # Without reward_instruction_pattern the whole prompt is the instruction.
    expected = judge.single_absolute_grade("Name a fruit. ", "An apple.", RUBRIC).score
    assert graded.json()["rewards"] == pytest.approx([expected], abs=1e-5)
