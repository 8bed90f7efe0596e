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

"""``llamafactory-cli export`` of a cotraft run: the merged model judges exactly like base model + adapter."""

import pytest
import yaml

from llamafactory_tract.data.score_format import score_format_of
from llamafactory_tract.judge.loader import load_backend
from llamafactory_tract.judge.predictors import expected_score
from tests.helpers.inference import PROMPTS, eval_config
from tests.train.test_train_cli import SMOKE_RECIPE, cli, train_smoke_recipe

SCORE_VALUES = [1.0, 2.0, 3.0, 4.0, 5.0]
# The run's cotraft keys, as its training YAML states them; the export parser must accept them.
COTRAFT_KEYS = {
    "stage": "cotraft",
    "raft_lambda": 1.0,
    "score_delimiter": "So the overall score is",
    "score_values": "1,2,3,4,5",
    "cotraft_score_in_ce": False,
}


def rail_scores(model_dir, adapter_dir=None) -> tuple[list[list[float]], list[float]]:
    """Score-token probabilities right after each prompt (RAIL) and their expected scores, in float32."""
    overrides = {"adapter_name_or_path": str(adapter_dir)} if adapter_dir else {}
    backend = load_backend(eval_config(model_dir, "llama3", **overrides), with_cot=False)
    probs = backend.score_prompts(PROMPTS)
    backend.close()
    return probs, [expected_score(row, SCORE_VALUES, renormalize=True) for row in probs]


@pytest.mark.slow
def test_exported_cotraft_model_scores_like_base_plus_adapter(tiny_model_dirs, tmp_path):
    model_dir, template = tiny_model_dirs["tiktoken"]
    # A large learning rate, so that 2 steps move the scores well beyond the comparison tolerance.
    _, adapter_dir = train_smoke_recipe(tiny_model_dirs, tmp_path, max_steps="2", learning_rate="0.05")
    export_yaml = tmp_path / "export.yaml"
    export_dir = tmp_path / "merged"
    export_yaml.write_text(
        yaml.safe_dump(
            {
                "model_name_or_path": str(model_dir),
                "adapter_name_or_path": str(adapter_dir),
                "template": template,
                "finetuning_type": "lora",
                **COTRAFT_KEYS,
                "export_dir": str(export_dir),
                "infer_dtype": "float32",  # LLaMA-Factory would otherwise export a float32 model in bf16
            }
        )
    )
    result = cli("export", str(export_yaml))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert (export_dir / "model.safetensors").is_file() and not (export_dir / "adapter_config.json").exists()

    base_probs, base_scores = rail_scores(model_dir)
    adapter_probs, adapter_scores = rail_scores(model_dir, adapter_dir)
    merged_probs, merged_scores = rail_scores(export_dir)
    assert merged_scores == pytest.approx(adapter_scores, abs=1e-5)
    for merged_row, adapter_row in zip(merged_probs, adapter_probs, strict=True):
        assert merged_row == pytest.approx(adapter_row, rel=1e-4, abs=1e-9)
    # ... and the adapter mattered: without it the scores are different.
    assert max(abs(a - b) for a, b in zip(adapter_scores, base_scores, strict=True)) > 1e-3, (
        base_scores,
        adapter_scores,
    )


def test_the_training_yaml_parses_in_the_export_parser(tiny_model_dirs, tmp_path, monkeypatch):
    """A cotraft run's training YAML, with LLaMA-Factory's ALLOW_EXTRA_ARGS for its training-only keys."""
    from llamafactory.hparams import get_infer_args

    model_dir, _ = tiny_model_dirs["tiktoken"]
    train_config = yaml.safe_load(SMOKE_RECIPE.read_text())
    export_keys = {"model_name_or_path": str(model_dir), "export_dir": str(tmp_path / "merged")}
    monkeypatch.setenv("ALLOW_EXTRA_ARGS", "1")
    _, data_args, finetuning_args, _ = get_infer_args({**train_config, **COTRAFT_KEYS, **export_keys})
    assert finetuning_args.stage == "cotraft" and finetuning_args.raft_lambda == 1.0
    assert score_format_of(data_args).values == ("1", "2", "3", "4", "5")
    # Without ALLOW_EXTRA_ARGS, a misspelt key of ours is still refused.
    monkeypatch.delenv("ALLOW_EXTRA_ARGS")
    with pytest.raises(ValueError, match="raft_lamda"):
        get_infer_args({**COTRAFT_KEYS, **export_keys, "raft_lamda": 0.5})
