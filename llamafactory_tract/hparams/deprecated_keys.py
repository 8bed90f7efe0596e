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

"""Old names of keys that now have one name in training and at inference, accepted with a deprecation message.

The authors' prompt rules were ``cotraft_score_only_prompt`` / ``cotraft_remove_reference`` in training
and ``score_only_prompt`` / ``remove_reference`` in ``tract eval``/``judge``/``serve``; both sides now use
the short names (as ``score_delimiter`` and ``score_values`` always have). A YAML or override with the old
name still works, says which name to use, and stops if it also sets the new one.
"""

from typing import Any

from llamafactory_tract.extras.errors import TractUserError
from llamafactory_tract.extras.logging import get_logger

logger = get_logger(__name__)

RENAMED_KEYS = {"cotraft_score_only_prompt": "score_only_prompt", "cotraft_remove_reference": "remove_reference"}


def rename_deprecated_keys(args: dict[str, Any], source: str = "the config") -> dict[str, Any]:
    """``args`` with each old key under its new name (a warning names both); both names set is an error."""
    renamed = dict(args)
    for old, new in RENAMED_KEYS.items():
        if old not in renamed:
            continue
        if new in renamed:
            raise TractUserError(f"{source} sets both `{old}` and `{new}`, two names of one key: keep `{new}`.")
        logger.warning_rank0(f"`{old}` is deprecated: it is now `{new}` (the same key in training and at inference).")
        renamed[new] = renamed.pop(old)
    return renamed


def rename_deprecated_flags(flags: list[str]) -> list[str]:
    """Command-line ``--old[=value]`` flags under their new names (``rename_deprecated_keys`` for argv)."""
    names = {item[2:].partition("=")[0]: index for index, item in enumerate(flags) if item.startswith("--")}
    rename_deprecated_keys(dict.fromkeys(names), "the command line")  # same checks and messages
    return [_renamed_flag(item) for item in flags]


def _renamed_flag(item: str) -> str:
    name, equals, value = item[2:].partition("=") if item.startswith("--") else ("", "", "")
    return f"--{RENAMED_KEYS[name]}{equals}{value}" if name in RENAMED_KEYS else item
