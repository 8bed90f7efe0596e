"""The import hook grafts LLaMA-Factory once, and refuses (saying why) on a version it was not built for."""

import importlib
import types

import llamafactory_tract_patches as hook
from llamafactory_tract_patches.llamafactory_0_9_5 import requested_stage


def test_grafts_are_applied_on_import():
    for name in hook.GRAFTED_MODULES:
        assert getattr(importlib.import_module(name), "__tract_grafted__", False), name
    parser = importlib.import_module("llamafactory.hparams.parser")
    *_, finetuning_args, _ = parser.get_train_args(
        {"model_name_or_path": "m", "template": "empty", "stage": "cotraft", "output_dir": "unused", "raft_lambda": 2}
    )
    assert type(finetuning_args).__name__ == "TractFinetuningArguments" and finetuning_args.raft_lambda == 2


def test_unsupported_llamafactory_version_grafts_nothing_and_says_why(monkeypatch, capsys):
    monkeypatch.setattr(hook, "SUPPORTED_LLAMAFACTORY_VERSIONS", ("0.0.1",))
    module = types.ModuleType("llamafactory.train.tuner")
    hook.apply_graft(module)
    assert not getattr(module, "__tract_grafted__", False)
    message = capsys.readouterr().err
    assert "stage `cotraft` is NOT registered" in message and "found 0.9.5" in message


def test_requested_stage_reads_yaml_dicts_and_cli_flags():
    assert requested_stage({"stage": "cotraft"}) == "cotraft"
    assert requested_stage(["--stage", "cotraft", "--do_train"]) == "cotraft"
    assert requested_stage(["--stage=sft"]) == "sft"
    assert requested_stage(["--do_train"]) is None
