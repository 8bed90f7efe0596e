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

"""Predictors and the transformers backend on tiny random Llama models of three tokenizer families."""

import numpy as np
import pytest
import torch

from llamafactory_tract.judge.backend import JudgePrompt, SamplingConfig
from llamafactory_tract.judge.predictors import JudgePredictor, expected_score, sample_score
from llamafactory_tract.judge.row_sampling import PerRowSampler
from llamafactory_tract.judge.stopping import StopTextCriteria
from tests.helpers.inference import PROMPTS, TINY_FAMILIES, tiny_backend
from tests.helpers.tiny_models import tiktoken_style_tokenizer

SAMPLING = SamplingConfig(max_new_tokens=6)
VALUES = [1.0, 2.0, 3.0, 4.0, 5.0]


@pytest.fixture(scope="module")
def model_root(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny_judges")


def _independent_probs(backend, prompt, cot):
    ids = backend.contexts.score_context(prompt, cot)
    with torch.no_grad():
        logits = backend.model(torch.tensor([ids])).logits[0, -1]
    return torch.softmax(logits.float(), -1)[list(backend.score_tokens.token_ids)]


@pytest.mark.parametrize("template", sorted(TINY_FAMILIES))
def test_cot_rail_scores_match_a_fresh_forward_pass_and_count_forced_cots(model_root, template):
    backend = tiny_backend(model_root, template, with_cot=True)
    predictor = JudgePredictor(backend, "cot_rail", SAMPLING, n_cot=2, seed=3, renormalize=True)
    predictions = predictor.predict(PROMPTS, ["a/0", "a/1"])
    for prompt, prediction in zip(PROMPTS, predictions, strict=True):
        assert len(prediction.cots) == len(prediction.cot_scores) == 2
        assert prediction.score == pytest.approx(np.mean(prediction.cot_scores))
        assert all(1.0 <= score <= 5.0 for score in prediction.cot_scores)
        # A random model never writes the delimiter: every CoT is closed by force at the token limit.
        assert prediction.closed_by == ["max_new_tokens", "max_new_tokens"]
        assert prediction.generated_tokens == [6, 6]
        for cot, probs in zip(prediction.cots, prediction.score_probs, strict=True):
            reference = _independent_probs(backend, prompt, cot)
            assert torch.allclose(torch.tensor(list(probs.values())), reference, atol=1e-6)


@pytest.mark.parametrize("template", sorted(TINY_FAMILIES))
def test_a_rows_cot_depends_only_on_its_seed_never_on_its_batch(model_root, template):
    backend = tiny_backend(model_root, template, with_cot=True)
    prompts = [*PROMPTS, JudgePrompt.from_instruction("Short."), JudgePrompt.from_instruction("A long prompt. " * 12)]
    seeds = [11, 12, 13, 14]
    sampling = SamplingConfig(max_new_tokens=12)
    together = backend.sample_cots(prompts, sampling, seeds)
    alone = [backend.sample_cots([prompt], sampling, [seed])[0] for prompt, seed in zip(prompts, seeds, strict=True)]
    reordered = backend.sample_cots(prompts[::-1], sampling, seeds[::-1])[::-1]
    for batch, single, other in zip(together, alone, reordered, strict=True):
        assert batch.cot == single.cot == other.cot and batch.generated_tokens == single.generated_tokens
        # Other padding and batch shape move float32 logits by a few ulps at most (see test_eval_resume.py).
        assert np.allclose(batch.score_probs, single.score_probs, rtol=0, atol=1e-6)
    assert backend.sample_cots(prompts[:1], sampling, [99])[0].cot != together[0].cot
    # top_p close to 0 keeps only the most likely token: per-row sampling then equals greedy decoding.
    nucleus = backend.sample_cots(prompts, SamplingConfig(top_p=1e-6, max_new_tokens=12), seeds)
    greedy = backend.sample_cots(prompts, SamplingConfig(temperature=0.0, max_new_tokens=12), seeds)
    assert [sample.cot for sample in nucleus] == [sample.cot for sample in greedy]


def test_per_row_sampler_draws_from_the_tempered_nucleus():
    scores = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(4000, 1)
    sampler = PerRowSampler(list(range(4000)), temperature=0.5, top_p=0.9, device=torch.device("cpu"))
    chosen = sampler(torch.zeros((4000, 1), dtype=torch.long), scores.clone())
    assert torch.all(torch.isfinite(chosen).sum(-1) == 1) and torch.all(chosen.max(-1).values == 0)
    tempered = torch.tensor([0.5, 0.3, 0.15, 0.05]) ** 2
    tempered /= tempered.sum()  # [0.676, 0.243, 0.061, 0.007]: the two first reach top_p 0.9, the rest is cut
    nucleus = tempered[:2] / tempered[:2].sum()
    counts = torch.bincount(chosen.argmax(-1), minlength=4).float() / 4000
    assert counts[2:].sum() == 0 and torch.allclose(counts[:2], nucleus, atol=0.02)
    again = PerRowSampler(list(range(4000)), temperature=0.5, top_p=0.9, device=torch.device("cpu"))
    assert torch.equal(again(torch.zeros((4000, 1), dtype=torch.long), scores.clone()), chosen)


def test_unnormalised_rail_is_the_full_vocabulary_expectation(model_root):
    backend = tiny_backend(model_root, "llama3", with_cot=False)
    predictions = JudgePredictor(backend, "rail", SAMPLING).predict(PROMPTS, ["b/0", "b/1"])
    for prompt, prediction in zip(PROMPTS, predictions, strict=True):
        probs = list(prediction.score_probs[0].values())
        assert 0 < sum(probs) < 1  # full-vocabulary softmax, not renormalised
        assert prediction.score == pytest.approx(sum(v * p for v, p in zip(VALUES, probs, strict=True)))
        assert prediction.cots == [] and prediction.closed_by == []
        assert torch.allclose(torch.tensor(probs), _independent_probs(backend, prompt, ""), atol=1e-6)


@pytest.mark.parametrize("template", sorted(TINY_FAMILIES))
def test_score_cots_reads_the_score_after_a_given_cot_as_a_fresh_forward_pass(model_root, template):
    backend = tiny_backend(model_root, template, with_cot=True)
    cots = ["Short.", "A much longer given chain of thought, so that the batch is padded on the left."]
    for prompt, cot, probs in zip(PROMPTS, cots, backend.score_cots(PROMPTS, cots), strict=True):
        assert torch.allclose(torch.tensor(probs), _independent_probs(backend, prompt, cot), atol=1e-6)
    same_prompt = backend.score_cots(PROMPTS[:1] * 2, cots)
    assert not torch.allclose(torch.tensor(same_prompt[0]), torch.tensor(same_prompt[1]), atol=1e-6)  # the CoT counts


def test_decode_predictors_sample_score_values_reproducibly(model_root):
    backend = tiny_backend(model_root, "mistral", with_cot=False)
    first = JudgePredictor(backend, "decode", SAMPLING, n_cot=5, seed=1).predict(PROMPTS, ["c/0", "c/1"])
    again = JudgePredictor(backend, "decode", SAMPLING, n_cot=5, seed=1).predict(PROMPTS, ["c/0", "c/1"])
    for prediction, repeat in zip(first, again, strict=True):
        assert len(prediction.cot_scores) == 5 and set(prediction.cot_scores) <= set(VALUES)
        assert prediction.cot_scores == repeat.cot_scores
        assert prediction.score == pytest.approx(np.mean(prediction.cot_scores))


def test_predictor_refuses_a_backend_built_for_the_other_mode(model_root):
    backend = tiny_backend(model_root, "mistral", with_cot=False)
    with pytest.raises(ValueError, match="with_cot=True"):
        JudgePredictor(backend, "cot_rail", SAMPLING)


def test_expected_and_sampled_scores():
    probs = [0.1, 0.0, 0.2, 0.1, 0.1]
    assert expected_score(probs, VALUES, renormalize=False) == pytest.approx(0.1 + 0.6 + 0.4 + 0.5)
    assert expected_score(probs, VALUES, renormalize=True) == pytest.approx(1.6 / 0.5)
    assert sample_score(probs, VALUES, temperature=0.0, rng=np.random.default_rng(0)) == 3.0
    draws = {sample_score(probs, VALUES, 1.0, np.random.default_rng(seed)) for seed in range(200)}
    assert draws == {1.0, 3.0, 4.0, 5.0}


def test_stop_criteria_fires_per_row_once_the_text_contains_the_delimiter():
    tokenizer = tiktoken_style_tokenizer()
    prompt = tokenizer.encode("The response is clear.", add_special_tokens=False)
    generated = [
        tokenizer.encode(" It is good. So the overall score is", add_special_tokens=False),
        tokenizer.encode(" It is good. So the overall", add_special_tokens=False),
        tokenizer.encode(" Vague. [RESULT]", add_special_tokens=False),
    ]
    width = max(len(ids) for ids in generated)
    pad = tokenizer.pad_token_id  # a special token, skipped when decoding
    rows = torch.tensor([prompt + [pad] * (width - len(ids)) + ids for ids in generated])
    criteria = StopTextCriteria(tokenizer, ("So the overall score is", "[RESULT]"), prompt_length=len(prompt))
    assert criteria(rows, None).tolist() == [True, False, True]
    assert criteria.stopped_at == {0: rows.shape[1], 2: rows.shape[1]}
    prompt_only = StopTextCriteria(tokenizer, ("The response",), prompt_length=len(prompt))
    assert prompt_only(rows, None).tolist() == [False, False, False]
