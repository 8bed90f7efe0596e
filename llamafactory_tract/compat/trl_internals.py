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

"""trl 0.24.0 internals: import GRPO past two defects with transformers 5 and vLLM 0.20.

trl 0.24.0 (the newest LLaMA-Factory 0.9.5 allows) stores transformers 5's ``_is_package_available``
results, ``(False, None)`` tuples, as availability flags; a tuple is truthy, so ``from trl import
GRPOTrainer`` imports ``weave`` and ``vllm_ascend`` and fails (unsloth#5129 and ms-swift#9770 take the
bool the same way). With vLLM installed it imports ``GuidedDecodingParams``, which vLLM 0.20 no longer
has, so TRL is told vLLM is absent: the policy generates with transformers (not ``use_vllm``).
``GRPOTrainer`` also writes ``model.warnings_issued``, which transformers 5 models no longer have.
"""

import importlib
from typing import Any


def grpo_classes() -> tuple[type, type]:
    """``(GRPOConfig, GRPOTrainer)``, importable in this environment (see the module docstring)."""
    flags = importlib.import_module("trl.import_utils")  # trl's lazy package hides it as an attribute
    for name, value in list(vars(flags).items()):
        if name.endswith("_available") and isinstance(value, tuple):
            setattr(flags, name, value[0])
    flags._vllm_available = False
    from trl import GRPOConfig, GRPOTrainer

    return GRPOConfig, GRPOTrainer


def grpo_ready(policy: Any) -> Any:
    """The policy model with the attribute ``GRPOTrainer.__init__`` writes to (absent in transformers 5)."""
    if not hasattr(policy, "warnings_issued"):
        policy.warnings_issued = {}
    return policy
