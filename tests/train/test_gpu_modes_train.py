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

"""GPU-only training set-ups of ``stage: cotraft`` that are decided by arguments, shown on CPU.

FlashAttention-2 packing, the FA2 fallback, the full-logit memory under ZeRO-3/FSDP and LLaMA-Factory's
alternative SFT losses: each is what the collator, the parser or the trainer does with the arguments
a GPU run has, so it is tested here with the real parser, collator and trainer.
"""

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from llamafactory.data import SFTDataCollatorWith4DAttentionMask, get_template_and_fix_tokenizer
from llamafactory.hparams import get_train_args
from llamafactory.model import load_model, load_tokenizer
from transformers import AutoTokenizer, Gemma2Config, Gemma2ForCausalLM
from transformers.utils import is_flash_attn_2_available

from llamafactory_tract.hparams.cotraft_checks import ALTERNATIVE_SFT_LOSSES, FLASH_ATTN_INSTALL
from llamafactory_tract.train.cotraft.loss import full_logits_extra_bytes
from llamafactory_tract.train.cotraft.workflow import build_data_collator, load_cotraft_dataset
from tests.helpers.judge_data import sgd_full_finetune_config, write_judge_dataset

FA2_PACKING = {"neat_packing": True, "flash_attn": "fa2", "per_device_train_batch_size": 1}


def judge_config(tiny_model_dirs, tmp_path, rows: int = 4, **overrides) -> dict:
    model_dir, _ = tiny_model_dirs["tiktoken"]
    data_dir = write_judge_dataset(tmp_path / "data", rows=rows)
    return sgd_full_finetune_config(model_dir, data_dir, tmp_path / "out", overwrite_cache=True, **overrides)


def fa2_training_set_up(config: dict):
    """Datasets and collator as ``run_cotraft`` builds them, on the attention a flash-attn install gives.

    Without flash-attn LLaMA-Factory leaves the model on SDPA; with it, its ``configure_attn_implementation``
    sets ``config._attn_implementation = "flash_attention_2"``, which is all the collator reads.
    """
    model_args, data_args, training_args, finetuning_args, _ = get_train_args(config)
    tokenizer_module = load_tokenizer(model_args)
    template = get_template_and_fix_tokenizer(tokenizer_module["tokenizer"], data_args)
    _, dataset_module = load_cotraft_dataset(template, tokenizer_module, model_args, data_args, training_args)
    model = load_model(tokenizer_module["tokenizer"], model_args, finetuning_args, training_args.do_train)
    model.config._attn_implementation = "flash_attention_2"
    collator = build_data_collator(template, tokenizer_module, model, model_args, data_args, training_args)
    return dataset_module, collator


def test_fa2_neat_packing_collates_an_evaluation_batch_of_eight_unpacked_rows(tiny_model_dirs, tmp_path):
    config = judge_config(tiny_model_dirs, tmp_path, rows=16, val_size=8, do_eval=True, **FA2_PACKING)
    dataset_module, collator = fa2_training_set_up(config)
    eval_rows = [dict(row) for row in dataset_module["eval_dataset"]]
    assert len(eval_rows) == 8 and collator.neat_packing and collator.attn_implementation == "flash_attention_2"

    upstream = SFTDataCollatorWith4DAttentionMask(
        **{name: getattr(collator, name) for name in SFTDataCollatorWith4DAttentionMask.__dataclass_fields__}
    )
    plain_rows = [{k: v for k, v in row.items() if not k.startswith("score_")} for row in eval_rows]
    with pytest.raises(AssertionError, match="bsz should be 1 for neat packing"):
        upstream([dict(row) for row in plain_rows])  # what evaluation met before: LLaMA-Factory's assert

    batch = collator([dict(row) for row in eval_rows])
    expected = replace(upstream, neat_packing=False, block_diag_attn=False)([dict(row) for row in plain_rows])
    assert batch["input_ids"].shape[0] == 8 and batch["score_index"].shape == (8, 1)
    assert batch["attention_mask"].dim() == 2 and (batch["attention_mask"] == 0).any()  # padding stays masked
    for key, value in expected.items():
        assert torch.equal(batch[key], value), key
    scored = batch["input_ids"].gather(1, batch["score_index"])
    assert torch.equal(scored, torch.tensor([[row["input_ids"][row["score_index"]]] for row in eval_rows]))


def test_fa2_neat_packing_still_packs_training_rows_for_flash_attention(tiny_model_dirs, tmp_path):
    dataset_module, collator = fa2_training_set_up(judge_config(tiny_model_dirs, tmp_path, rows=8, **FA2_PACKING))
    packed_row = dataset_module["train_dataset"][0]
    assert len(packed_row["score_index"]) > 1
    batch = collator([dict(packed_row)])
    assert batch["attention_mask"] is None  # LLaMA-Factory's FA2 packing: restarting position ids, no mask
    assert (batch["position_ids"][0] == 0).sum() == len(packed_row["score_index"])
    assert batch["score_index"].tolist() == [packed_row["score_index"]]


def test_a_neat_packing_run_evaluates_its_unpacked_rows_in_batches_of_eight(tiny_model_dirs, tmp_path):
    """End to end on SDPA (the attention this machine has): packed training, evaluation rows batched by 8."""
    from llamafactory.train.tuner import run_exp

    config = judge_config(tiny_model_dirs, tmp_path, rows=16, val_size=8, do_eval=True, neat_packing=True)
    run_exp({**config, "max_steps": 1, "per_device_train_batch_size": 1, "per_device_eval_batch_size": 8})
    results = json.loads((tmp_path / "out" / "eval_results.json").read_text())
    assert results["eval_samples_per_second"] / results["eval_steps_per_second"] == pytest.approx(
        8, rel=1e-3
    )  # 8 rows a step
    assert 0 < results["eval_rmse"] < 4


def test_fa2_neat_packing_with_a_training_batch_above_one_is_refused_when_parsed(tiny_model_dirs, tmp_path):
    config = judge_config(tiny_model_dirs, tmp_path, **{**FA2_PACKING, "per_device_train_batch_size": 2})
    with pytest.raises(ValueError, match=r"per_device_train_batch_size=2: set `per_device_train_batch_size: 1`"):
        get_train_args(config)


@pytest.mark.skipif(is_flash_attn_2_available(), reason="FlashAttention-2 is usable here: nothing falls back")
@pytest.mark.parametrize("neat_packing", [True, False], ids=["neat_packing", "padded"])
def test_fa2_without_flash_attn_warns_of_the_fallback_its_cost_and_the_install(
    tiny_model_dirs, tmp_path, caplog, neat_packing
):
    get_train_args(judge_config(tiny_model_dirs, tmp_path, **{**FA2_PACKING, "neat_packing": neat_packing}))
    assert "FlashAttention-2 is not available here" in caplog.text
    assert "falls back to transformers' default attention (SDPA)" in caplog.text
    assert f"Install it with `{FLASH_ATTN_INSTALL}`" in caplog.text
    assert ("dense block-diagonal 512 x 512 attention mask" in caplog.text) == neat_packing  # cutoff_len 512


def test_no_fallback_warning_when_fa2_is_not_asked_for(tiny_model_dirs, tmp_path, caplog):
    get_train_args(judge_config(tiny_model_dirs, tmp_path, flash_attn="sdpa"))
    assert "Process rank: 0" in caplog.text and "FlashAttention-2 is not available" not in caplog.text


@pytest.fixture(scope="module")
def softcapped_gemma2(tiny_model_dirs, tmp_path_factory) -> Path:
    """A 2-layer Gemma 2 with the released models' logit softcapping: a model the chunked loss must not take."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dirs["tiktoken"][0])
    torch.manual_seed(0)
    config = Gemma2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        final_logit_softcapping=30.0,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    directory = tmp_path_factory.mktemp("softcapped_gemma2")
    Gemma2ForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.mark.parametrize("fallback", ["switched_off", "softcapped_model"])
def test_a_run_without_the_chunked_loss_logs_its_extra_memory_once(
    tiny_model_dirs, softcapped_gemma2, tmp_path, caplog, fallback
):
    """ZeRO-3/FSDP (no DeepSpeed here) log through the same path as every other reason for full logits."""
    from llamafactory.train.tuner import run_exp

    config = judge_config(tiny_model_dirs, tmp_path, max_steps=1, per_device_train_batch_size=2)
    if fallback == "switched_off":
        config["cotraft_chunked_loss"] = False
    else:
        config["model_name_or_path"] = str(softcapped_gemma2)
    run_exp(config)
    vocab = json.loads((Path(config["model_name_or_path"]) / "config.json").read_text())["vocab_size"]
    gib = full_logits_extra_bytes(2, 512, vocab) / 2**30
    line = f"Estimated extra memory per micro-batch: {gib:.2f} GiB (float32 logits, log-softmax and gradient: "
    assert caplog.text.count(line) == 1
    assert f"3 x 4 bytes x batch 2 x cutoff_len 512 x vocab {vocab})." in caplog.text
    reason = "cotraft_chunked_loss: false" if fallback == "switched_off" else "softcaps its logits"
    assert reason in caplog.text


@pytest.mark.parametrize("key", sorted(ALTERNATIVE_SFT_LOSSES))
def test_alternative_sft_losses_are_refused_when_parsed(tiny_model_dirs, tmp_path, key):
    with pytest.raises(ValueError, match=rf"does not support `{key}`: .*`compute_loss_func`.* Unset `{key}`"):
        get_train_args(judge_config(tiny_model_dirs, tmp_path, **{key: True}))
    get_train_args(judge_config(tiny_model_dirs, tmp_path / "sft", stage="sft", **{key: True}))  # sft keeps them
