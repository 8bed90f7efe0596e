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

from llamafactory.extras import logging as llamafactory_logging

PLUGIN_LOGGER = "llamafactory.tract"


def get_logger(name: str) -> logging.Logger:
    return llamafactory_logging.get_logger(f"{PLUGIN_LOGGER}.{name.removeprefix('llamafactory_tract.')}")
