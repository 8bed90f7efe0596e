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

"""``neat_packing`` under ``stage: cotraft``: one score per packed judge row, same loss and update as unpacked."""

import json
from pathlib import Path

import pytest
import torch
from llamafactory.data import get_template_and_fix_tokenizer
from llamafactory.extras.constants import IGNORE_INDEX
from llamafactory.hparams import get_train_args
from llamafactory.model import load_tokenizer
from safetensors.torch import load_file

from llamafactory_tract.train.cotraft.workflow import load_cotraft_dataset
from tests.helpers.judge_data import sgd_full_finetune_config, write_judge_dataset


def judge_config(model_dir: Path, data_dir: Path, output_dir: Path, **overrides) -> dict:
    return sgd_full_finetune_config(model_dir, data_dir, output_dir, overwrite_cache=True, **overrides)


def encoded_rows(model_dir: Path, data_dir: Path, output_dir: Path, **overrides):
    config = judge_config(model_dir, data_dir, output_dir, **overrides)
    model_args, data_args, training_args, _, _ = get_train_args(config)
    tokenizer_module = load_tokenizer(model_args)
    template = get_template_and_fix_tokenizer(tokenizer_module["tokenizer"], data_args)
    _, module = load_cotraft_dataset(template, tokenizer_module, model_args, data_args, training_args)
    return list(module["train_dataset"])


# LLaMA-Factory 0.9.5 streams a local file as `num_shards=dataloader_num_workers` shards: 0 shards yield no rows.
STREAMING = {"streaming": True, "dataloader_num_workers": 1, "max_steps": 1}


@pytest.mark.parametrize("streaming", [False, True], ids=["map_style", "streaming"])
def test_each_packed_judge_row_keeps_its_tokens_labels_and_score(tiny_model_dirs, tmp_path, streaming):
    model_dir, _ = tiny_model_dirs["tiktoken"]
    data_dir = write_judge_dataset(tmp_path / "data", rows=10)
    single = encoded_rows(model_dir, data_dir, tmp_path / "single")
    packed = encoded_rows(
        model_dir, data_dir, tmp_path / "packed", neat_packing=True, **(STREAMING if streaming else {})
    )

    assert 1 < len(packed) < len(single)
    expected = sorted((row["input_ids"], row["labels"], row["score_index"], row["score_target"]) for row in single)
    found = []
    for row in packed:
        assert len(row["input_ids"]) == 512  # cutoff_len: LLaMA-Factory pads packed rows to a fixed length
        bounds = row["packing_params"]["sequence_boundaries"]
        assert len(row["score_index"]) == len(row["score_target"]) == len(bounds) - 2  # last span: padding
        for number, (start, end, index, target) in enumerate(
            zip(bounds, bounds[1:], row["score_index"], row["score_target"], strict=False)
        ):
            assert set(row["attention_mask"][start:end]) == {number + 1}  # neat_packing's per-row index
            assert row["position_ids"][start:end] == list(range(end - start))
            assert start < index < end
            found.append((row["input_ids"][start:end], row["labels"][start:end], index - start, target))
        assert set(row["attention_mask"][bounds[-2] :]) == {0} and set(row["labels"][bounds[-2] :]) == {IGNORE_INDEX}
    assert sorted(found) == expected


def one_sgd_step(model_dir: Path, data_dir: Path, output_dir: Path, **overrides) -> tuple[dict, dict]:
    """One full fine-tuning step over every row (batch 8), returning the weights and the logged losses."""
    from llamafactory.train.tuner import run_exp

    config = judge_config(
        model_dir,
        data_dir,
        output_dir,
        per_device_train_batch_size=8,
        max_steps=1,
        learning_rate=1.0,
        max_grad_norm=0.0,
        **overrides,
    )
    run_exp(config)
    log = json.loads((output_dir / "trainer_log.jsonl").read_text().splitlines()[0])
    return load_file(output_dir / "model.safetensors"), log


@pytest.mark.slow
@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "full_logits"])
def test_a_packed_batch_gives_the_loss_and_update_of_the_unpacked_batch(tiny_model_dirs, tmp_path, chunked):
    """8 rows of varied length, one step: packed into 3 rows of 512 tokens vs 8 padded rows (float32)."""
    model_dir, _ = tiny_model_dirs["tiktoken"]
    data_dir = write_judge_dataset(tmp_path / "data", rows=8)
    common = dict(cotraft_chunked_loss=chunked, cotraft_loss_chunk_size=64)
    single_weights, single_log = one_sgd_step(model_dir, data_dir, tmp_path / "single", **common)
    packed_weights, packed_log = one_sgd_step(model_dir, data_dir, tmp_path / "packed", neat_packing=True, **common)

    for key in ("loss", "ce_loss", "raft_loss"):
        assert packed_log[key] == pytest.approx(single_log[key], rel=1e-4), key
    initial = load_file(model_dir / "model.safetensors")
    for name, before in initial.items():
        single_update = single_weights[name] - before
        packed_update = packed_weights[name] - before
        assert torch.allclose(packed_update, single_update, atol=1e-6, rtol=1e-4), name
    assert any((single_weights[name] - before).abs().max() > 1e-4 for name, before in initial.items())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"packing": True}, "packed rows attend to each other"),
        ({"train_on_prompt": True}, "`train_on_prompt` and `mask_history` are not supported"),
        ({"do_predict": True, "predict_with_generate": True}, "does not generate"),
    ],
)
def test_options_cotraft_cannot_honour_are_refused_when_parsed(tiny_model_dirs, tmp_path, overrides, message):
    model_dir, _ = tiny_model_dirs["tiktoken"]
    data_dir = write_judge_dataset(tmp_path / "data", rows=2)
    with pytest.raises(ValueError, match=message):
        get_train_args(judge_config(model_dir, data_dir, tmp_path / "out", **overrides))


def test_neat_packing_parses_as_cotraft_with_block_diagonal_attention(tiny_model_dirs, tmp_path):
    model_dir, _ = tiny_model_dirs["tiktoken"]
    data_dir = write_judge_dataset(tmp_path / "data", rows=2)
    model_args, data_args, _, finetuning_args, _ = get_train_args(
        judge_config(model_dir, data_dir, tmp_path / "out", neat_packing=True)
    )
    assert finetuning_args.stage == "cotraft" and data_args.packing and model_args.block_diag_attn
