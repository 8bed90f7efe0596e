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

"""The chunked loss equals ``cotraft_loss`` on full logits: values and gradients, unit to trainer level."""

import inspect
import json

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import (
    Gemma2Config,
    Gemma2ForCausalLM,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    LlamaConfig,
    LlamaForCausalLM,
    TrainerCallback,
)

from llamafactory_tract.train.cotraft.chunked_loss import chunked_cotraft_loss, linear_cross_entropy_sum
from llamafactory_tract.train.cotraft.final_hidden_states import (
    PLAIN_HEAD_MODEL_TYPES,
    SOFTCAP_IF_SET_MODEL_TYPES,
    chunked_loss_blocker,
    forward_final_hidden_states,
)
from llamafactory_tract.train.cotraft.loss import IGNORE_INDEX, cotraft_loss, expected_scores_from_logits
from tests.helpers.judge_data import sgd_full_finetune_config, write_judge_dataset

SCORE_IDS = torch.tensor([11, 12, 13, 14, 15])
SCORE_VALUES = torch.arange(1.0, 6.0)


def judge_batch(vocab_size: int, batch: int = 3, length: int = 41, seed: int = 0) -> dict[str, torch.Tensor]:
    """Prompts of varied length masked, one unscored sequence (score_index -1), score token masked."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(0, vocab_size, (batch, length), generator=generator)
    labels = input_ids.clone()
    score_index = torch.tensor([length - 3, length - 9, -1, length - 5][:batch])
    for row in range(batch):
        labels[row, : 5 + 4 * row] = IGNORE_INDEX
        if score_index[row] >= 0:
            labels[row, score_index[row]] = IGNORE_INDEX
    return dict(
        input_ids=input_ids,
        labels=labels,
        score_index=score_index,
        score_target=torch.tensor([4.0, 2.0, 5.0, 1.0][:batch]),
    )


def loss_kwargs(batch: dict[str, torch.Tensor]) -> dict:
    return dict(
        labels=batch["labels"],
        score_index=batch["score_index"],
        score_target=batch["score_target"],
        score_token_ids=SCORE_IDS,
        score_values=SCORE_VALUES,
        raft_lambda=0.7,
        ce_normalizer=torch.tensor(97.0),
        raft_normalizer=torch.tensor(3.0),
    )


@pytest.mark.parametrize("chunk_size", [1, 7, 4096])
def test_loss_parts_and_gradients_match_full_logits_in_float64(chunk_size):
    torch.manual_seed(0)
    vocab, hidden_size = 103, 16
    hidden = torch.randn(3, 41, hidden_size, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(vocab, hidden_size, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(vocab, dtype=torch.float64, requires_grad=True)
    kwargs = loss_kwargs(judge_batch(vocab))

    full = cotraft_loss(logits=torch.nn.functional.linear(hidden, weight, bias), **kwargs)
    chunked = chunked_cotraft_loss(hidden, weight, bias, chunk_size=chunk_size, **kwargs)

    for name in ("loss", "ce_sum", "squared_error_sum", "expected_scores"):
        torch.testing.assert_close(getattr(chunked, name), getattr(full, name), rtol=1e-12, atol=1e-10)
    for expected, actual in zip(
        torch.autograd.grad(full.loss, (hidden, weight, bias)),
        torch.autograd.grad(chunked.loss, (hidden, weight, bias)),
        strict=True,
    ):
        assert expected.abs().max() > 0
        torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-12)


def test_packed_rows_with_several_scores_match_full_logits_and_score_each_judge_row():
    """score_index [B, K] (neat_packing): K judge rows per row, -1 filling rows with fewer."""
    torch.manual_seed(2)
    vocab, hidden_size = 97, 8
    hidden = torch.randn(2, 41, hidden_size, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(vocab, hidden_size, dtype=torch.float64, requires_grad=True)
    kwargs = {
        **loss_kwargs(judge_batch(vocab, batch=2)),
        "score_index": torch.tensor([[12, 30], [25, -1]]),
        "score_target": torch.tensor([[4.0, 2.0], [5.0, 0.0]]),
    }
    logits = torch.nn.functional.linear(hidden, weight)
    full = cotraft_loss(logits=logits, **kwargs)
    chunked = chunked_cotraft_loss(hidden, weight, None, chunk_size=16, **kwargs)

    for name in ("loss", "squared_error_sum", "expected_scores"):
        torch.testing.assert_close(getattr(chunked, name), getattr(full, name), rtol=1e-12, atol=1e-10)
    # Each score is read from the position before it; the -1 filler adds no squared error.
    rows = expected_scores_from_logits(logits[[0, 0, 1], [11, 29, 24]].detach(), SCORE_IDS, SCORE_VALUES)
    torch.testing.assert_close(full.expected_scores[[0, 0, 1], [0, 1, 0]], rows)
    squared = (rows - torch.tensor([4.0, 2.0, 5.0], dtype=torch.float64)).square().sum()
    torch.testing.assert_close(full.squared_error_sum.detach(), squared)
    full_grads = torch.autograd.grad(full.loss, (hidden, weight))
    for expected, actual in zip(full_grads, torch.autograd.grad(chunked.loss, (hidden, weight)), strict=True):
        torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-12)


def test_without_grad_the_same_sum_is_returned_and_frozen_weight_gets_no_gradient():
    torch.manual_seed(1)
    hidden = torch.randn(50, 8, requires_grad=True)
    weight = torch.randn(97, 8)
    targets = torch.randint(0, 97, (50,))
    reference = torch.nn.functional.cross_entropy(hidden @ weight.T, targets, reduction="sum")
    with torch.no_grad():
        torch.testing.assert_close(linear_cross_entropy_sum(hidden, weight, None, targets, 16), reference)
    total = linear_cross_entropy_sum(hidden, weight, None, targets, 16)
    total.backward()
    torch.testing.assert_close(hidden.grad, torch.autograd.grad(reference, hidden)[0], rtol=1e-5, atol=1e-6)
    assert weight.grad is None


TINY_DECODER = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2
)


def tiny_llama(vocab_size: int = 211) -> LlamaForCausalLM:
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab_size, tie_word_embeddings=False, **TINY_DECODER))


def tiny_gemma3_text(vocab_size: int = 211) -> Gemma3ForCausalLM:
    """Gemma 3 text (e.g. gemma-3-1b): tied embeddings, no final logit softcapping."""
    torch.manual_seed(0)
    return Gemma3ForCausalLM(Gemma3TextConfig(vocab_size=vocab_size, head_dim=8, **TINY_DECODER))


def tiny_gemma2(softcapping: float | None) -> Gemma2ForCausalLM:
    config = Gemma2Config(vocab_size=64, head_dim=8, final_logit_softcapping=softcapping, **TINY_DECODER)
    return Gemma2ForCausalLM(config)


@pytest.mark.parametrize("build", [tiny_llama, tiny_gemma3_text], ids=["llama", "gemma3_text"])
def test_real_model_gradients_match_for_every_parameter(build):
    """Decoder output captured in the model's forward + chunked loss == full logits + cotraft_loss."""
    model = build()
    assert chunked_loss_blocker(model, sharded_weights=False) is None
    batch = judge_batch(model.config.vocab_size, batch=4, length=33)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": torch.ones_like(batch["input_ids"])}
    head = model.get_output_embeddings()

    full = cotraft_loss(logits=model(**inputs).logits, **loss_kwargs(batch))
    full_grads = torch.autograd.grad(full.loss, list(model.parameters()))
    hidden, outputs = forward_final_hidden_states(model, model, inputs)
    assert outputs.logits.shape[1] == 1
    chunked = chunked_cotraft_loss(hidden, head.weight, head.bias, chunk_size=16, **loss_kwargs(batch))
    chunked_grads = torch.autograd.grad(chunked.loss, list(model.parameters()))

    torch.testing.assert_close(chunked.loss, full.loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(chunked.expected_scores, full.expected_scores, rtol=1e-5, atol=1e-6)
    for (name, _), expected, actual in zip(model.named_parameters(), full_grads, chunked_grads, strict=True):
        torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-6, msg=name)


def test_blocker_allows_plain_heads_and_refuses_softcapping_and_adapted_heads():
    llama = tiny_llama()
    assert chunked_loss_blocker(llama, sharded_weights=False) is None
    assert "sharded" in chunked_loss_blocker(llama, sharded_weights=True)
    lora = get_peft_model(llama, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    assert chunked_loss_blocker(lora, sharded_weights=False) is None
    head_lora = get_peft_model(tiny_llama(), LoraConfig(r=4, target_modules=["q_proj", "lm_head"]))
    assert "not a plain nn.Linear" in chunked_loss_blocker(head_lora, sharded_weights=False)
    assert "softcaps its logits (final_logit_softcapping=30.0)" in chunked_loss_blocker(
        tiny_gemma2(30.0), sharded_weights=False
    )
    assert chunked_loss_blocker(tiny_gemma2(None), sharded_weights=False) is None


SOFTCAP_LINES = [
    "if self.config.final_logit_softcapping is not None:",
    "logits = logits / self.config.final_logit_softcapping",
    "logits = torch.tanh(logits)",
    "logits = logits * self.config.final_logit_softcapping",
]


def forward_after_lm_head(model_type: str) -> list[str]:
    """The source lines of ``<model_type>ForCausalLM.forward`` from the decoder output to ``loss = None``."""
    import transformers
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    source = inspect.getsource(getattr(transformers, MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[model_type]).forward)
    lines = [line.strip() for line in source.splitlines() if line.strip() and not line.strip().startswith("#")]
    start = lines.index("hidden_states = outputs.last_hidden_state")
    return lines[start + 1 : lines.index("loss = None", start)]


@pytest.mark.parametrize("model_type", sorted(PLAIN_HEAD_MODEL_TYPES | SOFTCAP_IF_SET_MODEL_TYPES))
def test_allow_listed_model_types_compute_logits_as_lm_head_of_the_decoder_output(model_type):
    """Checked against the installed transformers: an upstream change to a listed model fails here."""
    after = [line for line in forward_after_lm_head(model_type) if not line.startswith("slice_indices =")]
    assert after[0] == "logits = self.lm_head(hidden_states[:, slice_indices, :])"
    assert after[1:] == (SOFTCAP_LINES if model_type in SOFTCAP_IF_SET_MODEL_TYPES else [])


class LogitWidthRecorder(TrainerCallback):
    """Records how many positions per sequence the LM head computes in each forward."""

    def __init__(self) -> None:
        self.widths: set[int] = set()

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        model.get_output_embeddings().register_forward_hook(lambda _m, args, _o: self.widths.add(args[0].shape[1]))


def train_losses(model_dir, data_dir, output_dir, chunked: bool) -> tuple[list[float], set[int]]:
    from llamafactory.train.tuner import run_exp

    recorder = LogitWidthRecorder()
    run_exp(
        sgd_full_finetune_config(
            model_dir,
            data_dir,
            output_dir,
            per_device_train_batch_size=2,
            gradient_accumulation_steps=2,
            max_steps=3,
            learning_rate=0.5,
            cotraft_chunked_loss=chunked,
            cotraft_loss_chunk_size=64,
        ),
        callbacks=[recorder],
    )
    entries = [json.loads(line) for line in (output_dir / "trainer_log.jsonl").read_text().splitlines()]
    return [entry["loss"] for entry in entries if "loss" in entry], recorder.widths


@pytest.mark.slow
def test_training_steps_give_the_same_losses_with_and_without_chunking(tiny_model_dirs, tmp_path):
    """Full fine-tuning (the LM head is trained too) for 3 optimizer steps of 2 x 2 sequences."""
    model_dir, _ = tiny_model_dirs["tiktoken"]
    data_dir = write_judge_dataset(tmp_path / "data", rows=12)
    full, full_widths = train_losses(model_dir, data_dir, tmp_path / "full", chunked=False)
    chunked, chunked_widths = train_losses(model_dir, data_dir, tmp_path / "chunked", chunked=True)
    assert min(full_widths) > 1 and chunked_widths == {1}  # full logits vs one logit row per sequence
    assert len(full) == 3 and len(set(full)) == 3
    assert chunked == pytest.approx(full, rel=1e-4)
