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

"""The judge server: ``POST /v1/grade`` returns CoTs, score distributions and expected scores.

    tract serve yaml_configs/judge_smollm2_cpu.yaml port=8000

A FastAPI app of its own rather than a graft onto ``llamafactory-cli api``: that server speaks the
OpenAI chat protocol (text out), its ``/v1/score/evaluation`` route serves reward models, and its
transformers engine answers one request at a time (``MAX_CONCURRENT=1``); serving expected scores
there would mean patching its private engine classes. Here the judge object of ``judge/api.py``
is shared as is, so the server grades exactly like ``TractJudge`` and ``tract judge``.

An engine that dies is not recovered: vLLM's engine core is gone for good after e.g. a CUDA
out-of-memory error (``EngineDeadError``). The server then answers 503 to ``/health`` and to every
request, fails the requests it holds, and exits with status ``EXIT_ENGINE_DEAD``, so that a
supervisor (systemd, Kubernetes, a restart loop) starts a fresh one.
"""

import asyncio
import os
import re
import sys
from collections.abc import Callable
from contextlib import asynccontextmanager
from functools import reduce
from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from llamafactory.api.protocol import ScoreEvaluationRequest, ScoreEvaluationResponse
from pydantic import Field, field_validator, model_validator

from llamafactory_tract.extras.logging import get_logger
from llamafactory_tract.judge.api import TractJudge
from llamafactory_tract.judge.config import JudgeConfig, load_command_config
from llamafactory_tract.judge.grade import Grade
from llamafactory_tract.judge.prompts import Rubric, absolute_prompt, format_rubric
from llamafactory_tract.judge.relative import relative_grade
from llamafactory_tract.judge.reward import unit_score
from llamafactory_tract.judge.vllm_async import AsyncVllmJudge, ContinuousGrader
from llamafactory_tract.serve.batcher import MicroBatcher
from llamafactory_tract.serve.schema import GradeRequest, RelativeGradeRequest, RewardLabel, RewardRequest, RubricBody

logger = get_logger(__name__)

EXIT_ENGINE_DEAD = 3
"""Exit status of ``tract serve`` after its engine died."""
ENGINE_POLL_S = 0.5
"""How often the server checks that the engine is alive."""
DEAD_ENGINE_GRACE_S = 2.0
"""How long a server whose engine died keeps answering 503 (naming the cause) before it exits."""
ENGINE_DEAD_DETAIL = (
    "The judge's engine has died (vLLM EngineDeadError, e.g. after running out of GPU memory) and cannot "
    f"recover; this server exits with status {EXIT_ENGINE_DEAD} so that its supervisor restarts it."
)


JSON_BODY_HINT = (
    "The body must be JSON sent with the header `content-type: application/json` "
    "(curl: -H 'content-type: application/json' -d '{...}'; Python: requests.post(url, json=body))."
)


class EngineDead(RuntimeError):
    """The engine can answer no request any more (see ``ENGINE_DEAD_DETAIL``)."""


class ServeConfig(JudgeConfig):
    """``tract serve``: the judge keys plus where to listen and how to batch."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    max_batch_rows: int = Field(default=32, ge=1)
    """Rows gathered into one micro-batch (the model then runs them in batches of ``batch_size`` sequences)."""
    max_wait_ms: float = Field(default=5.0, ge=0)
    """How long the first request of a micro-batch waits for others."""
    serve_engine: Literal["async", "batch"] | None = None
    """``async`` (``backend: vllm`` only, and its default): each row goes to vLLM's asynchronous engine as it
    arrives and joins the sequences in flight (``judge/vllm_async.py``). ``batch`` (the default otherwise):
    micro-batches of ``max_batch_rows`` / ``max_wait_ms``, each graded by one blocking call."""
    max_items_per_request: int = Field(default=64, ge=1)
    max_n_cot: int = Field(default=8, ge=1)
    reward_rubric: str | dict[str, str] | None = None
    """``/get_reward``: the rubric of every query whose label carries none."""
    reward_instruction_pattern: str | None = None
    """``/get_reward``: a regex whose group 1, at its last match in the prompt, is the instruction (e.g. the last
    user turn inside the policy's chat template); unset, the whole prompt is the instruction."""
    reward_prompt_end: str | None = None
    """``/v1/score/evaluation``: the text that ends a prompt in the policy's chat template (e.g.
    ``<|im_start|>assistant\n``); each message's response starts after its last occurrence."""
    reward_response_suffixes: list[str] = Field(default_factory=list)
    """``/get_reward``: texts cut from the end of each response (OpenRLHF decodes the query with special tokens,
    so it ends with the policy's end-of-turn token, e.g. ``<|im_end|>``)."""

    @field_validator("reward_rubric")
    @classmethod
    def _check_reward_rubric(cls, value: Rubric | None) -> Rubric | None:
        if value is not None:
            format_rubric(value)
        return value

    @field_validator("reward_instruction_pattern")
    @classmethod
    def _check_instruction_pattern(cls, value: str | None) -> str | None:
        try:
            groups = 1 if value is None else re.compile(value).groups
        except re.error as error:
            raise ValueError(f"not a regular expression: {error}") from None
        if groups < 1:
            raise ValueError("the pattern needs a group: group 1 is the instruction")
        return value

    @model_validator(mode="after")
    def _resolve_serve_engine(self) -> "ServeConfig":
        if self.serve_engine is None:
            self.serve_engine = "async" if self.backend == "vllm" else "batch"
        elif self.serve_engine == "async" and self.backend != "vllm":
            raise ValueError(
                f"serve_engine: async runs vLLM's asynchronous engine; backend {self.backend!r} has none: set "
                "`backend: vllm` or `serve_engine: batch`"
            )
        return self


def reward_items(request: RewardRequest, config: ServeConfig) -> list[tuple[str, str, Rubric, str | None]]:
    """(instruction, response, rubric, reference answer) per OpenRLHF query; a ValueError names the entry.

    The response is the query after its prompt, less the ``reward_response_suffixes`` at its end; the
    instruction is the prompt or what ``reward_instruction_pattern`` finds in it; the label gives the
    reference answer (a string, ``""`` for none) or a ``RewardLabel``, whose rubric overrides ``reward_rubric``.
    """
    pattern = (
        None if config.reward_instruction_pattern is None else re.compile(config.reward_instruction_pattern, re.S)
    )
    labels = request.labels or [None] * len(request.query)
    items = []
    for index, (query, prompt, label) in enumerate(zip(request.query, request.prompts, labels, strict=True)):
        if not query.startswith(prompt):
            raise ValueError(f"query[{index}] does not start with prompts[{index}]: the response cannot be told apart")
        response = query.removeprefix(prompt)
        while (trimmed := reduce(str.removesuffix, config.reward_response_suffixes, response)) != response:
            response = trimmed
        instruction = prompt
        if pattern is not None:
            matches = list(pattern.finditer(prompt))
            if not matches:
                raise ValueError(f"prompts[{index}] has no match of reward_instruction_pattern {pattern.pattern!r}")
            instruction = matches[-1].group(1)
        rubric = label.rubric if isinstance(label, RewardLabel) else None
        reference = label.reference_answer if isinstance(label, RewardLabel) else label
        rubric = rubric.model_dump() if isinstance(rubric, RubricBody) else rubric or config.reward_rubric
        if rubric is None:
            raise ValueError(f"labels[{index}] carries no rubric and the server has no reward_rubric")
        items.append((instruction, response, rubric, reference or None))
    return items


def create_app(
    judge: TractJudge | AsyncVllmJudge, config: ServeConfig, stop: Callable[[], None] | None = None
) -> FastAPI:
    """The app; ``stop`` ends the server once the engine is dead (``run_server`` passes uvicorn's exit flag)."""
    batcher = (
        ContinuousGrader(judge)
        if isinstance(judge, AsyncVllmJudge)
        else MicroBatcher(judge.grade_prompts, config.max_batch_rows, config.max_wait_ms / 1000)
    )

    async def watch_engine() -> None:
        while not judge.backend.engine_dead():
            await asyncio.sleep(ENGINE_POLL_S)
        logger.error(ENGINE_DEAD_DETAIL)
        batcher.fail_all(EngineDead(ENGINE_DEAD_DETAIL))
        if stop is not None:
            await asyncio.sleep(DEAD_ENGINE_GRACE_S)
            stop()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        watcher = asyncio.create_task(watch_engine(), name="tract-judge-engine-watch")
        yield
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        await batcher.stop()

    app = FastAPI(title="TRACT judge", lifespan=lifespan)

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, error: RequestValidationError) -> JSONResponse:
        """FastAPI's 422 naming the field, plus how to send the body when it did not come as JSON."""
        content: dict[str, Any] = {"detail": jsonable_encoder(error.errors())}
        if "json" not in request.headers.get("content-type", ""):
            content["hint"] = JSON_BODY_HINT
        return JSONResponse(status_code=422, content=content)

    judge_config = judge.config

    @app.get("/health")
    async def health(response: Response) -> dict[str, Any]:
        dead = judge.backend.engine_dead()
        if dead:
            response.status_code = 503
        return {
            "status": "engine dead" if dead else "ok",
            **({"detail": ENGINE_DEAD_DETAIL} if dead else {}),
            "model": judge_config.model_name_or_path,
            "adapter": judge_config.adapter_name_or_path,
            "template": judge_config.template,
            "backend": judge_config.backend,
            "serve_engine": "async" if isinstance(judge, AsyncVllmJudge) else "batch",
            "predictor": judge_config.predictor,
            "n_cot": judge_config.n_cot,
            "seed": judge_config.seed,
            "score_only_prompt": judge_config.score_only_prompt,
            "remove_reference": judge_config.remove_reference,
            "prompts_truncated": judge.backend.contexts.shortened_prompts,
            "pending_rows": batcher.pending_rows,
            "batches": batcher.batches,
        }

    def admit(count: int, what: str) -> None:
        """503 once the engine is dead; 413 above ``max_items_per_request``."""
        if judge.backend.engine_dead():
            raise HTTPException(status_code=503, detail=ENGINE_DEAD_DETAIL)
        if count > config.max_items_per_request:
            raise HTTPException(
                status_code=413,
                detail=f"{count} {what} in one request; this server takes at most "
                f"{config.max_items_per_request} (max_items_per_request).",
            )

    def cots_of(request: GradeRequest | RelativeGradeRequest) -> int:
        n_cot = judge_config.n_cot if request.n_cot is None else request.n_cot
        if n_cot > config.max_n_cot:
            raise HTTPException(
                status_code=422, detail=f"n_cot={n_cot} exceeds this server's max_n_cot={config.max_n_cot}."
            )
        return n_cot

    async def graded(prompts: list[str], names: list[str], n_cot: int, seed: int) -> list[Grade]:
        """Grades through the shared micro-batcher; a prompt the judge's rules cannot rewrite is a 422 naming it."""
        for name, prompt in zip(names, prompts, strict=True):  # here, so one bad item cannot fail a shared batch
            try:
                judge.judge_prompt(prompt)
            except ValueError as error:
                raise HTTPException(status_code=422, detail=f"{name}: {error}") from None
        try:
            return await batcher.submit(prompts, n_cot, seed)
        except Exception:
            if judge.backend.engine_dead():
                raise HTTPException(status_code=503, detail=ENGINE_DEAD_DETAIL) from None
            raise

    @app.post("/v1/grade")
    async def grade(request: GradeRequest) -> dict[str, Any]:
        admit(len(request.items), "items")
        n_cot, seed = cots_of(request), judge_config.seed if request.seed is None else request.seed
        prompts = [absolute_prompt(*item.judge_fields(item.response)) for item in request.items]
        grades = await graded(prompts, [f"items[{index}]" for index in range(len(prompts))], n_cot, seed)
        return {
            "grades": [{"id": item.id, **grade.to_dict()} for item, grade in zip(request.items, grades, strict=True)],
            "n_cot": n_cot,
            "seed": seed,
        }

    @app.post("/v1/relative_grade")
    async def relative(request: RelativeGradeRequest) -> dict[str, Any]:
        """Which response of each pair is better (``judge/relative.py``): both graded in the same micro-batch."""
        admit(len(request.items), "items")
        n_cot, seed = cots_of(request), judge_config.seed if request.seed is None else request.seed
        sides = ("response_a", "response_b")
        items = [
            (f"items[{index}].{side}", item, getattr(item, side))
            for side in sides
            for index, item in enumerate(request.items)
        ]
        prompts = [absolute_prompt(*item.judge_fields(response)) for _, item, response in items]
        names = [name for name, _, _ in items]
        grades = await graded(prompts, names, n_cot, seed)
        count = len(request.items)
        pairs = [relative_grade(a, b, judge.values) for a, b in zip(grades[:count], grades[count:], strict=True)]
        return {
            "grades": [{"id": item.id, **pair.to_dict()} for item, pair in zip(request.items, pairs, strict=True)],
            "n_cot": n_cot,
            "seed": seed,
        }

    async def reward_grades(request: RewardRequest) -> list[Grade]:
        """The grades of reward queries (``reward_items``), through the shared micro-batcher; 4xx/503 as for grades."""
        admit(len(request.query), "queries")
        try:
            prompts = [absolute_prompt(*item) for item in reward_items(request, config)]
        except ValueError as error:
            raise HTTPException(status_code=422, detail=str(error)) from None
        names = [f"query[{index}]" for index in range(len(prompts))]
        return await graded(prompts, names, judge_config.n_cot, judge_config.seed)

    @app.post("/get_reward")
    async def get_reward(request: RewardRequest) -> dict[str, Any]:
        """OpenRLHF's remote reward model (v0.11.0): ``rewards`` are expected scores, ``scores`` them in [0, 1]."""
        grades = await reward_grades(request)
        rewards = [grade.score for grade in grades]
        return {
            "rewards": rewards,
            "scores": [unit_score(reward, judge.values) for reward in rewards],
            "extra_logs": {"decoded_score": [grade.decoded_score for grade in grades]},
        }

    @app.post("/v1/score/evaluation")
    async def score_evaluation(request: ScoreEvaluationRequest) -> ScoreEvaluationResponse:
        """LLaMA-Factory's reward-model API (PPO with ``reward_model_type: api``): each message is a decoded
        prompt + response, cut after the last ``reward_prompt_end``; ``scores`` are expected scores."""
        end = config.reward_prompt_end
        if end is None:
            raise HTTPException(
                status_code=422,
                detail="this server has no reward_prompt_end, the text that ends a prompt in the policy's template "
                "(e.g. '<|im_start|>assistant\\n'): set it to tell each message's response from its prompt.",
            )
        prompts = []
        for index, message in enumerate(request.messages):
            if end not in message:
                raise HTTPException(status_code=422, detail=f"messages[{index}] has no reward_prompt_end {end!r}.")
            prompts.append(message[: message.rindex(end) + len(end)])
        grades = await reward_grades(RewardRequest(query=request.messages, prompts=prompts))
        return ScoreEvaluationResponse(
            id=f"tract-{grades[0].key}", model=request.model, scores=[g.score for g in grades]
        )

    return app


def run_server(items: list[str]) -> None:
    """Load the judge, then serve until interrupted, or until the engine dies (then exit ``EXIT_ENGINE_DEAD``)."""
    import uvicorn

    config = load_command_config(items, ServeConfig, "tract serve")
    judge = (AsyncVllmJudge if config.serve_engine == "async" else TractJudge).from_config(config.judge_only())

    def stop() -> None:
        server.should_exit = True  # as on SIGTERM: stop listening, finish the responses under way, return

    app = create_app(judge, config, stop)
    server = uvicorn.Server(uvicorn.Config(app, host=config.host, port=config.port, log_level="info"))
    try:
        server.run()
    finally:
        judge.close()
    if judge.backend.engine_dead():
        # Not sys.exit: a grading thread blocked on the dead engine's output queue would keep the
        # interpreter from exiting (it joins worker threads at exit); the engine's processes are gone.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_ENGINE_DEAD)
