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

"""Loggers under LLaMA-Factory's ``llamafactory`` logger, so ours print with its handler, format and level.

LLaMA-Factory configures only its own root logger; a logger named ``llamafactory_tract.x`` would
fall back to Python's root logger and drop INFO lines.
"""

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

from llamafactory.extras import logging as llamafactory_logging

LIBRARY_LOGGER = "llamafactory"
PLUGIN_LOGGER = f"{LIBRARY_LOGGER}.tract"
QUIET_ENV = {"LLAMAFACTORY_VERBOSITY": "WARN", "VLLM_LOGGING_LEVEL": "WARNING"}
"""LLaMA-Factory's parser then leaves transformers quiet; vLLM reads its level when first imported."""


def get_logger(name: str) -> logging.Logger:
    return llamafactory_logging.get_logger(f"{PLUGIN_LOGGER}.{name.removeprefix('llamafactory_tract.')}")


@contextmanager
def quiet_libraries() -> Iterator[None]:
    """Warnings and errors only, from LLaMA-Factory (our loggers included), transformers and vLLM, while inside.

    For commands whose output is a progress bar and a summary (``tract judge``): model-loading INFO lines
    and library progress bars would bury both. Everything is restored on the way out, so a caller in the
    same process (a notebook, a test) keeps its own logging.
    """
    from transformers.utils import logging as transformers_logging

    library = logging.getLogger(LIBRARY_LOGGER)
    saved_env = {name: os.environ.get(name) for name in QUIET_ENV}
    saved_level, saved_verbosity = library.level, transformers_logging.get_verbosity()
    bars_were_on = transformers_logging.is_progress_bar_enabled()
    os.environ.update({name: value for name, value in QUIET_ENV.items() if saved_env[name] is None})
    library.setLevel(logging.WARNING)
    transformers_logging.set_verbosity_warning()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
        library.setLevel(saved_level)
        transformers_logging.set_verbosity(saved_verbosity)
        if bars_were_on:
            transformers_logging.enable_progress_bar()
