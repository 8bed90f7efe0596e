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

"""The demo's SmolLM2 conversion is faithful: eos/pad are the end-of-turn token of the model config."""

import json

import pytest
from transformers import AutoConfig, AutoTokenizer

from llamafactory_tract.demo import smollm2


@pytest.mark.slow
def test_conversion_takes_eos_and_pad_from_the_model_config(tmp_path):
    try:
        smollm2.smollm2_gguf_path()
    except FileNotFoundError as error:
        pytest.skip(str(error))
    stale = tmp_path / "SmolLM2-135M-Instruct"
    stale.mkdir()
    (stale / "config.json").write_text("{}")  # an earlier conversion without the marker: converted again
    folder = smollm2.smollm2_hf_dir(tmp_path)
    tokenizer, config = AutoTokenizer.from_pretrained(folder), AutoConfig.from_pretrained(folder)
    assert (tokenizer.eos_token, tokenizer.eos_token_id) == ("<|im_end|>", config.eos_token_id) == ("<|im_end|>", 2)
    assert tokenizer.pad_token_id == config.pad_token_id == 2 and tokenizer.bos_token_id == config.bos_token_id == 1
    assert json.loads((folder / smollm2.CONVERSION_MARKER).read_text())["version"] == smollm2.CONVERSION_VERSION
    turn = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert turn.rstrip().endswith(tokenizer.eos_token)
    assert smollm2.smollm2_hf_dir(tmp_path) == folder and not list(tmp_path.glob("*.partial"))
