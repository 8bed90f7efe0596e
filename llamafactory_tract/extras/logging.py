"""Loggers under LLaMA-Factory's ``llamafactory`` logger, so ours print with its handler, format and level.

LLaMA-Factory configures only its own root logger; a logger named ``llamafactory_tract.x`` would
fall back to Python's root logger and drop INFO lines.
"""

import logging

from llamafactory.extras import logging as llamafactory_logging

PLUGIN_LOGGER = "llamafactory.tract"


def get_logger(name: str) -> logging.Logger:
    return llamafactory_logging.get_logger(f"{PLUGIN_LOGGER}.{name.removeprefix('llamafactory_tract.')}")
