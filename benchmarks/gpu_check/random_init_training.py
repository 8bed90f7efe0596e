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


"""One training configuration of ``benchmarks.training``, its model drawn at random on the device in bf16.

    python -m benchmarks.gpu_check.random_init_training SPEC NAME OUT

A 7-8B model's weights cannot travel to the GPU machine, and writing then reading 16 GB per process
would cost more than the steps measured. LLaMA-Factory's ``train_from_scratch`` builds the model with
``AutoModelForCausalLM.from_config``; here that call is made under the run's device and dtype, so the
weights are drawn where they are used. Everything after it (LoRA, gradient checkpointing, the trainer)
is LLaMA-Factory's own path.
"""

import json
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from benchmarks.training import run_configuration


def draw_on(device: str, dtype: torch.dtype) -> None:
    """Make ``from_config`` build on ``device`` in ``dtype`` (only in this benchmark process)."""
    build = AutoModelForCausalLM.from_config

    def from_config_on_device(config, **kwargs):
        with torch.device(device):
            return build(config, dtype=dtype, **kwargs)

    AutoModelForCausalLM.from_config = from_config_on_device


if __name__ == "__main__":
    spec_file, config_name, out_file = sys.argv[1:4]
    spec = json.loads(Path(spec_file).read_text())
    cuda = torch.cuda.is_available()
    draw_on("cuda" if cuda else "cpu", torch.bfloat16 if cuda else torch.float32)
    Path(out_file).write_text(json.dumps(run_configuration(spec, config_name)))
