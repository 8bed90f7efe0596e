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

"""The backend factory, apart from the backends so that neither imports the other.

The model and adapter paths are checked here, before either backend loads anything: a missing path
would otherwise cost a minute of Hub connection retries and end in ``OSError: Failed to load tokenizer.``
"""

from typing import TYPE_CHECKING

from llamafactory_tract.extras.paths import check_adapter_sources, check_model_source
from llamafactory_tract.judge.backend import JudgeBackend

if TYPE_CHECKING:
    from llamafactory_tract.judge.config import JudgeConfig


def load_backend(config: "JudgeConfig", with_cot: bool) -> JudgeBackend:
    """The configured backend; vLLM is imported only when asked for."""
    check_model_source(config.model_name_or_path)
    check_adapter_sources(config.adapter_name_or_path)
    if config.backend == "vllm":
        from llamafactory_tract.judge.vllm_backend import VllmJudgeBackend

        return VllmJudgeBackend.from_config(config, with_cot)
    from llamafactory_tract.judge.hf_backend import HfJudgeBackend

    return HfJudgeBackend.from_config(config, with_cot)
