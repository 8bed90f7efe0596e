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

"""LLaMA-Factory's ``LogCallback``, extended so ``trainer_log.jsonl`` also carries the CoT-RAFT loss parts.

The instance LLaMA-Factory's ``_training_function`` created is adopted rather than replaced, so
whatever it set up (the web UI's abort signal and log handler) stays bound to the one callback.

``LogCallback`` writes a fixed set of keys (loss, lr, ...) from a worker thread; we remember our
extra keys per (step, train/eval) entry in ``on_log`` and merge them when that entry is written.
"""

from typing import Any

from llamafactory.train.callbacks import LogCallback
from typing_extensions import override

from llamafactory_tract.compat.llamafactory_internals import AmendedLogCallback, extend_instance

EXTRA_LOG_KEYS = ("ce_loss", "raft_loss", "aux_loss", "rmse", "pearson")


def _entry_kind(logs: dict[str, Any]) -> str | None:
    if "loss" in logs:
        return "train"
    if "eval_loss" in logs:
        return "eval"
    return None


def extra_log_values(logs: dict[str, Any]) -> dict[str, Any]:
    """Our keys in a trainer log entry, including ``eval_`` and per-dataset ``eval_<name>_`` variants."""
    return {key: value for key, value in logs.items() if key.endswith(EXTRA_LOG_KEYS)}


class TractLogCallback(AmendedLogCallback):
    pending_extras: dict[tuple[int, str], dict[str, Any]]

    @classmethod
    def adopt(cls, callback: LogCallback) -> "TractLogCallback":
        """Extend the ``LogCallback`` instance LLaMA-Factory built, keeping its state (and web-UI handlers)."""
        extend_instance(callback, cls)
        callback.pending_extras = {}
        return callback

    @override
    def on_log(self, args, state, control, **kwargs):
        latest = state.log_history[-1] if state.log_history else {}
        kind = _entry_kind(latest)
        extras = extra_log_values(latest)
        if kind and extras:
            self.pending_extras[(state.global_step, kind)] = extras
        super().on_log(args, state, control, **kwargs)

    @override
    def amend_entry(self, logs: dict[str, Any]) -> dict[str, Any]:
        kind = _entry_kind(logs)
        extras = self.pending_extras.pop((logs.get("current_steps"), kind), {}) if kind else {}
        return {**logs, **extras}
