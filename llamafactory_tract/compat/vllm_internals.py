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

"""vLLM 0.20 internals: the engine core client of an offline ``LLM``, to stop its processes and see them die."""

from typing import Any


def shutdown_engine(llm: Any) -> None:
    """Stop the engine core's processes now (they would otherwise hold device memory until exit)."""
    llm.llm_engine.engine_core.shutdown()


def engine_died(llm: Any) -> bool:
    """The engine core process has exited (set by the client's monitor thread); in-process engines have no flag."""
    resources = getattr(llm.llm_engine.engine_core, "resources", None)
    return resources is not None and resources.engine_dead
