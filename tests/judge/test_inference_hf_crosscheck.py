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

"""The transformers backend on the real SmolLM2-135M-Instruct and real Vicuna Bench rows.

CoT-RAIL's score step runs on the generation's KV cache; here it is checked against an
independent single forward pass over prompt + CoT + delimiter built from the template, and the
inference prompt is checked against the training encoding of the same row.
"""

import pytest
import torch

from llamafactory_tract.data.processor import CoTRaftDatasetProcessor
from llamafactory_tract.data.score_tokens import locate_score_token
from llamafactory_tract.hparams.data_args import TractDataArguments
from llamafactory_tract.judge.backend import JudgePrompt, SamplingConfig
from llamafactory_tract.judge.loader import load_backend
from tests.helpers.inference import eval_config, real_rows, require_smollm2

PAPER_SAMPLING = SamplingConfig(temperature=1.0, top_p=0.9, repetition_penalty=1.03, max_new_tokens=8)


@pytest.fixture(scope="module")
def smollm2_backend():
    return load_backend(eval_config(require_smollm2(), "smollm2"), with_cot=True)


def _reference_probs(backend, prompt: JudgePrompt, cot: str) -> tuple[torch.Tensor, list[int]]:
    """p(score tokens | prompt, CoT, delimiter) from one fresh forward pass, context built from the template."""
    template, tokenizer, score_tokens = backend.contexts.template, backend.tokenizer, backend.score_tokens
    score_format = score_tokens.score_format
    response = score_format.format_response(cot, score_format.values[-1])
    messages = prompt.messages + [{"role": "assistant", "content": response}]
    prompt_ids, response_ids = template.encode_oneturn(tokenizer, messages)
    index = locate_score_token(template, tokenizer, score_tokens, response_ids, cot, score_format.values[-1])
    ids = prompt_ids + response_ids[:index]
    with torch.no_grad():
        logits = backend.model(torch.tensor([ids])).logits[0, -1]
    return torch.softmax(logits.float(), -1)[list(score_tokens.token_ids)], ids[len(prompt_ids) :]


def test_cot_rail_probabilities_equal_an_independent_forward_pass(smollm2_backend):
    prompts = [JudgePrompt.from_instruction(row["instruction"]) for row in real_rows("vicuna_eval.json", 2)]
    samples = smollm2_backend.sample_cots(prompts, PAPER_SAMPLING, seeds=[0, 1])
    delimiter = smollm2_backend.score_tokens.score_format.delimiter
    for prompt, sample in zip(prompts, samples, strict=True):
        assert sample.closed_by == "max_new_tokens" and sample.generated_tokens == 8
        reference, response_prefix = _reference_probs(smollm2_backend, prompt, sample.cot)
        assert smollm2_backend.tokenizer.decode(response_prefix).rstrip().endswith(delimiter)
        assert torch.allclose(torch.tensor(sample.score_probs), reference, atol=1e-4)
        assert 0.0 < sum(sample.score_probs) <= 1.0


def test_delimiter_stop_eos_and_length_rows_in_one_batch():
    """A delimiter SmolLM2 writes by itself, so one row stops on it, one on EOS and one at the limit."""
    config = eval_config(require_smollm2(), "smollm2", score_delimiter="The overall score is")
    backend = load_backend(config, with_cot=True)
    prompts = [
        JudgePrompt.from_instruction(
            "Write a one-sentence review of a pizza, then finish with the exact words 'So the overall score is' "
            "followed by a number from 1 to 5."
        ),
        JudgePrompt.from_instruction("What is 2+2? Answer with one number."),
        JudgePrompt.from_instruction(real_rows("vicuna_eval.json", 1)[0]["instruction"]),
    ]
    greedy = SamplingConfig(temperature=0.0, repetition_penalty=1.03, max_new_tokens=24)
    samples = backend.sample_cots(prompts, greedy, seeds=[0, 0, 0])
    assert [sample.closed_by for sample in samples] == ["delimiter", "eos", "max_new_tokens"]
    assert "The overall score is" not in samples[0].cot and samples[0].generated_tokens < 24
    for prompt, sample in zip(prompts, samples, strict=True):
        reference, _ = _reference_probs(backend, prompt, sample.cot)
        assert torch.allclose(torch.tensor(sample.score_probs), reference, atol=1e-4)


def test_inference_prompt_and_score_context_equal_the_training_encoding(smollm2_backend):
    row = real_rows("vicuna_eval.json", 1)[0]
    contexts = smollm2_backend.contexts
    processor = CoTRaftDatasetProcessor(
        template=contexts.template,
        tokenizer=contexts.tokenizer,
        processor=None,
        data_args=TractDataArguments(template="smollm2", cutoff_len=4096),
    )
    assert processor.score_tokens == contexts.score_tokens
    prompt = [{"role": "user", "content": row["instruction"]}]
    cot = row["gpt4_feedback"][0]
    training, _ = processor.encode_example(prompt, f"{cot} [RESULT] 5", system=None, tools=None)
    inference_prompt = contexts.prompt_ids(JudgePrompt(messages=prompt))
    assert training.input_ids[: len(inference_prompt)] == inference_prompt
    assert training.labels[len(inference_prompt) - 1] == -100 and training.labels[len(inference_prompt)] != -100
    assert contexts.score_context(JudgePrompt(messages=prompt), cot) == training.input_ids[: training.score_index]
