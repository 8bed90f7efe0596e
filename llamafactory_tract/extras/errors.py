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

"""One rule for a user's mistake at every entry point: one message that says what to change, a non-zero exit.

Our checks raise ``TractUserError`` with the file (and row, column or key) and the way out in the message.
It is a ``ValueError``, so Python callers catch it as before. The command lines (``tract ...`` and
``llamafactory-cli train`` under ``stage: cotraft``) print that message alone and exit with
``USER_ERROR_EXIT``; ``TRACT_DEBUG=1`` re-raises it with its traceback. Anything else is a bug and keeps
its traceback.
"""

import os
import sys

DEBUG_ENV = "TRACT_DEBUG"
USER_ERROR_EXIT = 2
INTERRUPTED_EXIT = 130
"""Exit status after SIGINT or SIGTERM (as ``tract pipeline`` has always used for both)."""


class TractUserError(ValueError):
    """A mistake in the user's input (config key, data file, path); the message names it and what to do."""


def debug_requested() -> bool:
    """``TRACT_DEBUG=1`` (or true/yes/on): show tracebacks of user errors too."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def print_user_error(command: str, error: BaseException) -> int:
    """Print ``<command>: error: <message>`` on stderr and return the exit status for it."""
    print(f"{command}: error: {error}", file=sys.stderr)
    return USER_ERROR_EXIT
