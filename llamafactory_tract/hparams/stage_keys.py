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

"""The ``stage: cotraft`` keys belong to that stage: under another stage they would parse and do nothing.

``raft_lambda: 0.5`` in an ``sft`` YAML is a run the user believes is CoT-RAFT; it stops at parse time
naming the keys and the stage instead.
"""

from dataclasses import fields
from functools import cache
from typing import Any

from llamafactory.hparams import DataArguments, FinetuningArguments

from llamafactory_tract.extras.errors import TractUserError
from llamafactory_tract.hparams.data_args import TractDataArguments
from llamafactory_tract.hparams.finetuning_args import COTRAFT_STAGE, TractFinetuningArguments

DEFAULT_STAGE = "sft"
"""LLaMA-Factory's stage when a YAML names none."""


@cache
def cotraft_keys() -> frozenset[str]:
    """The keys this package adds to LLaMA-Factory's arguments (``stage`` itself is LLaMA-Factory's)."""
    added = set()
    for ours, theirs in ((TractDataArguments, DataArguments), (TractFinetuningArguments, FinetuningArguments)):
        added |= {field.name for field in fields(ours)} - {field.name for field in fields(theirs)}
    return frozenset(added)


def refuse_cotraft_keys(args: dict[str, Any] | list[str], stage: str | None) -> None:
    """Stop when ``args`` (a parsed YAML, or command-line flags) set a ``cotraft`` key under another stage."""
    stage = stage or DEFAULT_STAGE
    if stage == COTRAFT_STAGE:
        return
    names = args if isinstance(args, dict) else [item[2:].partition("=")[0] for item in args if item.startswith("--")]
    used = sorted(name for name in names if name in cotraft_keys())
    if used:
        keys = ", ".join(f"`{name}`" for name in used)
        them = "it" if len(used) == 1 else "them"
        raise TractUserError(
            f"{keys} {'is a key' if len(used) == 1 else 'are keys'} of `stage: cotraft`, but this run has "
            f"`stage: {stage}`, which would ignore {them}: set `stage: cotraft`, or remove {them}."
        )
