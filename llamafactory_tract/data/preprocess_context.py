"""Hands the resolved score tokens to LLaMA-Factory's ``get_dataset`` for the ``cotraft`` stage.

``get_dataset`` has no parameter for stage-specific settings; the graft in ``patches/`` reads
the active settings from here while ``run_cotraft`` preprocesses its data.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import NamedTuple

from llamafactory_tract.data.score_tokens import ScoreTokens


class CoTRaftPreprocessing(NamedTuple):
    score_tokens: ScoreTokens
    strict: bool
    score_in_ce: bool


_ACTIVE: ContextVar[CoTRaftPreprocessing | None] = ContextVar("cotraft_preprocessing", default=None)


@contextmanager
def cotraft_preprocessing(score_tokens: ScoreTokens, strict: bool, score_in_ce: bool = False) -> Iterator[None]:
    token = _ACTIVE.set(CoTRaftPreprocessing(score_tokens, strict, score_in_ce))
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def active_cotraft_preprocessing() -> CoTRaftPreprocessing:
    active = _ACTIVE.get()
    if active is None:
        raise RuntimeError("The `cotraft` stage preprocesses data only inside `run_cotraft` (no score tokens set).")
    return active
