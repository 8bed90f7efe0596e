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

"""Start-up checks of the paths a run reads and writes, before any model is loaded.

A model path that does not exist otherwise surfaces as a minute of hub connection retries and
``OSError: Failed to load tokenizer.``; an output folder that cannot be created, as a
``NotADirectoryError`` after the model has loaded and the first batch was predicted. Each check
raises ``TractUserError`` naming the key, the path and what to do.
"""

import os
from pathlib import Path

from llamafactory_tract.extras.errors import TractUserError

HUB_TIMEOUT_S = 10.0
"""How long the start-up check waits for the Hugging Face Hub to say whether a model id exists."""


def check_model_source(value: str, key: str = "model_name_or_path", cache_dir: str | None = None) -> None:
    """A transformers model folder here, or a Hub model id that is cached or exists on the Hub."""
    _check_source(value, key, "config.json", "a transformers model folder", cache_dir)


def check_adapter_sources(value: str | list[str] | None, key: str = "adapter_name_or_path") -> None:
    """Each of the comma-separated adapters: a PEFT adapter folder here, or a Hub id that exists."""
    adapters = value.split(",") if isinstance(value, str) else value or []
    for adapter in adapters:
        _check_source(adapter.strip(), key, "adapter_config.json", "a PEFT adapter folder", None)


def check_creatable_dir(folder: str | Path, key: str | None = None) -> None:
    """``folder`` exists as a folder we may write in, or can be created; ``key``: the config key that names it."""
    target = Path(folder).expanduser().absolute()
    existing = target
    while not existing.exists():
        existing = existing.parent
    prefix, choose = (f"`{key}`: ", f"Choose another `{key}`") if key else ("", "Choose another output folder")
    if not existing.is_dir():
        raise TractUserError(
            f"{prefix}{target} cannot be created: {existing} is a file, not a folder. {choose} (or move {existing} "
            "away)."
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise TractUserError(
            f"{prefix}{target} cannot be {'written' if existing == target else 'created'}: no write permission in "
            f"{existing}. {choose}, one you can write to."
        )


def _check_source(value: str, key: str, marker: str, kind: str, cache_dir: str | None) -> None:
    path = Path(value).expanduser()
    if path.is_dir():
        if not (path / marker).is_file():
            raise TractUserError(
                f"`{key}`: {path} is a folder without {marker}, so it is not {kind}. Point `{key}` at the folder "
                f"that holds {marker}."
            )
        return
    if path.exists() or _other_hub_requested():
        return  # a single file (e.g. GGUF), or a ModelScope / Modelers id: left to the loader
    missing = f"`{key}`: {value} does not exist here"
    if not _is_hub_id(value):
        raise TractUserError(f"{missing} (and is not a Hugging Face Hub id). Check the path.")
    if _in_hub_cache(value, marker, cache_dir):
        return
    if _env_enabled("HF_HUB_OFFLINE"):
        raise TractUserError(
            f"{missing}, and the Hub id {value} is not in the Hugging Face cache (HF_HUB_OFFLINE is set). Check "
            f"the path, or download it first (huggingface-cli download {value})."
        )
    problem = _hub_problem(value)
    if problem is not None:
        raise TractUserError(f"{missing}, and {problem}. Check the path (or the Hub id and your network).")


def _is_hub_id(value: str) -> bool:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if value.startswith((".", "~", "/")) or value.count("/") > 1:
        return False
    try:
        validate_repo_id(value)
    except HFValidationError:
        return False
    return True


def _in_hub_cache(repo_id: str, marker: str, cache_dir: str | None) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, marker, cache_dir=cache_dir), str)


def _hub_problem(repo_id: str) -> str | None:
    """Why the Hub cannot serve ``repo_id`` (not found, or unreachable); None when it can, or may."""
    import httpx
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    try:
        HfApi().model_info(repo_id, timeout=HUB_TIMEOUT_S)
    except GatedRepoError:
        return None  # it exists; the loader explains the access token it needs
    except RepositoryNotFoundError:
        return f"there is no model {repo_id} on the Hugging Face Hub (or it is private and no token is set)"
    except HfHubHTTPError:
        return None  # another HTTP answer (e.g. a server error): the loader retries and reports it
    except httpx.TransportError as error:
        return f"the Hugging Face Hub cannot be reached to look it up ({type(error).__name__}: {error})"
    return None


def _other_hub_requested() -> bool:
    return _env_enabled("USE_MODELSCOPE_HUB") or _env_enabled("USE_OPENMIND_HUB")


def _env_enabled(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
