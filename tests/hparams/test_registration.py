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

"""The import hook grafts LLaMA-Factory once, and refuses (saying why) on a version it was not built for."""

import importlib
import types

import llamafactory_tract_patches as hook

from llamafactory_tract.data.score_format import score_format_of


def test_grafts_are_applied_on_import_and_parse_our_keys():
    for name in hook.GRAFTED_MODULES:
        assert getattr(importlib.import_module(name), "__tract_grafted__", False), name
    parser = importlib.import_module("llamafactory.hparams.parser")
    _, data_args, _, finetuning_args, _ = parser.get_train_args(
        {
            "model_name_or_path": "m",
            "template": "empty",
            "stage": "cotraft",
            "output_dir": "unused",
            "raft_lambda": 2,
            "score_values": "1,2,3",
        }
    )
    assert finetuning_args.stage == "cotraft" and finetuning_args.raft_lambda == 2
    assert score_format_of(data_args).values == ("1", "2", "3")


def test_applying_a_graft_twice_wraps_once():
    tuner = importlib.import_module("llamafactory.train.tuner")
    wrapped = tuner.run_sft
    hook.apply_graft(tuner)
    assert tuner.run_sft is wrapped


def test_unsupported_llamafactory_version_grafts_nothing_and_says_why(monkeypatch, capsys):
    monkeypatch.setattr(hook, "SUPPORTED_LLAMAFACTORY_VERSIONS", ("0.0.1",))
    module = types.ModuleType("llamafactory.train.tuner")
    hook.apply_graft(module)
    assert not getattr(module, "__tract_grafted__", False)
    message = capsys.readouterr().err
    assert "stage `cotraft` is NOT registered" in message and "found 0.9.5" in message
