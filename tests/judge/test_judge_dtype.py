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

"""The transformers judge runs in the ``infer_dtype`` it is given, whatever dtype the checkpoint was saved in."""

import pytest
import torch

from llamafactory_tract.judge.loader import load_backend
from tests.helpers.inference import eval_config


@pytest.mark.parametrize(
    ("infer_dtype", "expected"),
    [("bfloat16", torch.bfloat16), ("float16", torch.float16), ("float32", torch.float32), ("auto", torch.float32)],
)
def test_the_model_runs_in_the_configured_dtype(tiny_model_dirs, infer_dtype: str, expected: torch.dtype) -> None:
    model_dir, template = tiny_model_dirs["tiktoken"]  # saved in float32; "auto" keeps the checkpoint's dtype
    backend = load_backend(eval_config(model_dir, template, infer_dtype=infer_dtype), with_cot=False)
    assert {parameter.dtype for parameter in backend.model.parameters()} == {expected}
