"""The vLLM backend against the transformers backend (needs vLLM and a GPU; skipped otherwise)."""

import pytest
import torch
from inference_helpers import eval_config, real_rows, require_smollm2

from llamafactory_tract.judge.backend import JudgePrompt
from llamafactory_tract.judge.loader import load_backend

vllm = pytest.importorskip("vllm", reason="vLLM is not installed (GPU extra: pip install .[gpu])")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the vLLM backend needs a CUDA GPU")
def test_vllm_score_probabilities_equal_the_transformers_backend():
    model_dir = require_smollm2()
    prompts = [JudgePrompt.from_instruction(row["instruction"]) for row in real_rows("vicuna_eval.json", 2)]
    vllm_backend = load_backend(eval_config(model_dir, "smollm2", backend="vllm", vllm_gpu_util=0.3), with_cot=False)
    hf_backend = load_backend(eval_config(model_dir, "smollm2"), with_cot=False)
    for got, expected in zip(vllm_backend.score_prompts(prompts), hf_backend.score_prompts(prompts), strict=True):
        assert got == pytest.approx(expected, abs=1e-3)
