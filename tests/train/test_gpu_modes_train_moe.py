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

"""A mixture-of-experts judge trains with its router auxiliary loss under ``cotraft``, as under ``sft``.

``cotraft`` with ``raft_lambda: 0`` and ``cotraft_score_in_ce: true`` is plain fine-tuning (Table 2 B.2),
so on the same batch its loss must be LLaMA-Factory's ``sft`` loss, ``moe_aux_loss_coef`` term included.
A randomly initialised 2-layer Mixtral (4 experts, top 2) around the tests' Llama-3 style tokenizer.
"""

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, MixtralConfig, MixtralForCausalLM

from tests.helpers.judge_data import TOPICS, sgd_full_finetune_config

AUX_COEF = 0.1


@pytest.fixture(scope="module")
def tiny_mixtral(tiny_model_dirs, tmp_path_factory) -> Path:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dirs["tiktoken"][0])
    torch.manual_seed(0)
    config = MixtralConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_local_experts=4,
        num_experts_per_tok=2,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    directory = tmp_path_factory.mktemp("tiny_mixtral")
    MixtralForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def delimiter_rows(tmp_path_factory) -> Path:
    """Responses already in the ``<CoT> So the overall score is <y>`` form, so sft and cotraft see the same text."""
    directory = tmp_path_factory.mktemp("moe_data")
    task = "###Task Description: grade the response.\n###The instruction to evaluate: explain"
    rows = [
        {
            "instruction": f"{task} {topic}.",
            "output": f"The answer on {topic} is {'clear' if score > 2 else 'vague'}. So the overall score is {score}",
        }
        for score, topic in zip([1, 2, 3, 4, 5, 2, 4, 5], TOPICS + TOPICS, strict=False)
    ]
    (directory / "judge.json").write_text(json.dumps(rows))
    info = {"judge": {"file_name": "judge.json", "columns": {"prompt": "instruction", "response": "output"}}}
    (directory / "dataset_info.json").write_text(json.dumps(info))
    return directory


def first_step_log(model_dir: Path, data_dir: Path, output_dir: Path, aux_coef: float | None = AUX_COEF, **overrides):
    """The logged losses of one step over all 8 rows (before any update), full fine-tuning."""
    from llamafactory.train.tuner import run_exp

    config = sgd_full_finetune_config(
        model_dir,
        data_dir,
        output_dir,
        per_device_train_batch_size=8,
        max_steps=1,
        moe_aux_loss_coef=aux_coef,
        overwrite_cache=True,
        **overrides,
    )
    run_exp(config)
    return json.loads((output_dir / "trainer_log.jsonl").read_text().splitlines()[0])


@pytest.fixture(scope="module")
def sft_log(tiny_mixtral, delimiter_rows, tmp_path_factory) -> dict:
    return first_step_log(tiny_mixtral, delimiter_rows, tmp_path_factory.mktemp("sft"), stage="sft")


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "full_logits"])
def test_moe_cotraft_as_plain_fine_tuning_gives_the_sft_loss_with_the_router_aux_term(
    tiny_mixtral, delimiter_rows, tmp_path, sft_log, chunked, caplog
):
    log = first_step_log(
        tiny_mixtral,
        delimiter_rows,
        tmp_path,
        raft_lambda=0.0,
        cotraft_score_in_ce=True,
        cotraft_chunked_loss=chunked,
    )
    assert ("chunked loss on" in caplog.text) == chunked
    assert log["aux_loss"] > 0.05  # AUX_COEF x Mixtral's load-balancing loss (about 2 for top-2 routing)
    assert log["loss"] == pytest.approx(sft_log["loss"], abs=1e-5)
    assert log["loss"] == pytest.approx(log["ce_loss"] + log["aux_loss"], abs=2e-4)


def test_a_moe_model_without_router_logits_adds_no_aux_term(tiny_mixtral, delimiter_rows, tmp_path):
    """Without ``moe_aux_loss_coef`` LLaMA-Factory leaves ``output_router_logits`` off: no term, no log key."""
    log = first_step_log(tiny_mixtral, delimiter_rows, tmp_path, aux_coef=None)
    assert "aux_loss" not in log and log["loss"] == pytest.approx(log["ce_loss"] + log["raft_loss"], abs=2e-4)
