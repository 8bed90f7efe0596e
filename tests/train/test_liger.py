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

"""``enable_liger_kernel`` under ``stage: cotraft``: refused on CPU, and on a GPU applied without Liger's fused CE.

Liger's kernels are Triton programs that cannot run here; what is tested is what this package decides:
the refusal on CPU, and that LLaMA-Factory's loader is asked for a model that keeps the transformers
forward (``require_logits``), which is what the chunked CoT-RAFT loss hooks into.
"""

import pytest
from llamafactory.hparams import get_train_args

from tests.helpers.judge_data import sgd_full_finetune_config, write_judge_dataset


def test_liger_on_cpu_is_refused_with_the_reason(tiny_model_dirs, tmp_path):
    model_dir, _ = tiny_model_dirs["tiktoken"]
    data_dir = write_judge_dataset(tmp_path / "data", rows=2)
    config = sgd_full_finetune_config(model_dir, data_dir, tmp_path / "out", enable_liger_kernel=True)
    with pytest.raises(ValueError, match=r"`enable_liger_kernel` needs a GPU: .* Triton programs"):
        get_train_args(config)


def test_the_loader_applies_liger_to_cotraft_without_fused_cross_entropy(tiny_model_dirs, tmp_path, monkeypatch):
    """LLaMA-Factory asks Liger for plain logits (no fused linear CE replacing the forward) for non-SFT stages."""
    import llamafactory.model.loader as loader
    from llamafactory.train.tuner import run_exp

    calls = []
    original = loader.apply_liger_kernel

    def recording(config, model_args, is_trainable, require_logits):
        calls.append(require_logits)
        return original(config, model_args, is_trainable, require_logits)

    monkeypatch.setattr(loader, "apply_liger_kernel", recording)
    model_dir, _ = tiny_model_dirs["tiktoken"]
    data_dir = write_judge_dataset(tmp_path / "data", rows=2)
    run_exp(sgd_full_finetune_config(model_dir, data_dir, tmp_path / "out", max_steps=1))
    assert calls == [True]
