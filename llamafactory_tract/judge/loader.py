"""The backend factory, apart from the backends so that neither imports the other."""

from typing import TYPE_CHECKING

from llamafactory_tract.judge.backend import JudgeBackend

if TYPE_CHECKING:
    from llamafactory_tract.eval.config import EvalConfig


def load_backend(config: "EvalConfig", with_cot: bool) -> JudgeBackend:
    """The configured backend; vLLM is imported only when asked for."""
    if config.backend == "vllm":
        from llamafactory_tract.judge.vllm_backend import VllmJudgeBackend

        return VllmJudgeBackend.from_config(config, with_cot)
    from llamafactory_tract.judge.hf_backend import HfJudgeBackend

    return HfJudgeBackend.from_config(config, with_cot)
