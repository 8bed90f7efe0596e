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

"""The four predictors of paper Table 1, on top of any backend.

- ``cot_rail`` (Eq. 3): sample a CoT up to the delimiter, score = sum_y y * p(str(y) | [x, s]).
- ``cot_decode``: sample a CoT, then sample the score token.
- ``rail`` (Eq. 1): no CoT, score = sum_y y * p(str(y) | x) (zero-shot, or after RAFT training).
- ``decode``: no CoT, sample the score token.
With ``n_cot`` > 1 the per-CoT (or per-draw) scores are averaged. ``p`` is the full-vocabulary
softmax as in the paper (and the training loss); ``renormalize`` divides by the score tokens'
total mass instead, which keeps a barely trained model's score inside [min, max].
Decoding samples a score literal with probability proportional to its full-vocabulary
probability (the distribution of a decoded score given that the next token is a score; the
token-level ``temperature`` sharpens it as in sampling, ``top_p`` is not applied).
"""

import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from llamafactory_tract.judge.backend import JudgeBackend, JudgePrompt, SamplingConfig

if TYPE_CHECKING:
    from llamafactory_tract.judge.config import JudgeConfig


@dataclass(frozen=True)
class PredictorSpec:
    name: str
    uses_cot: bool
    decodes: bool


PREDICTORS = {
    spec.name: spec
    for spec in (
        PredictorSpec("cot_rail", uses_cot=True, decodes=False),
        PredictorSpec("cot_decode", uses_cot=True, decodes=True),
        PredictorSpec("rail", uses_cot=False, decodes=False),
        PredictorSpec("decode", uses_cot=False, decodes=True),
    )
}


@dataclass
class JudgePrediction:
    """What a judge said about one example; lists have one entry per CoT (or per score draw)."""

    score: float
    cot_scores: list[float]
    score_probs: list[dict[str, float]]
    cots: list[str] = field(default_factory=list)
    closed_by: list[str] = field(default_factory=list)
    generated_tokens: list[int] = field(default_factory=list)


def expected_score(probs: list[float], values: list[float], renormalize: bool) -> float:
    """sum_y y * p(y); divided by sum_y p(y) when ``renormalize``."""
    weighted = float(np.dot(probs, values))
    if not renormalize:
        return weighted
    mass = float(np.sum(probs))
    return weighted / mass if mass > 0 else float(np.mean(values))


def sample_score(probs: list[float], values: list[float], temperature: float, rng: np.random.Generator) -> float:
    """Draw a score value given that the next token is a score token (greedy at temperature 0)."""
    weights = np.asarray(probs, dtype=float)
    if temperature == 0 or weights.sum() <= 0:
        return values[int(np.argmax(weights))]
    weights = weights ** (1.0 / temperature)
    return values[int(rng.choice(len(values), p=weights / weights.sum()))]


def example_seed(seed: int, key: str, draw: int = 0) -> int:
    """A seed that depends only on the run seed and the example, so a resumed run draws the same numbers."""
    return (seed * 1_000_003 + zlib.crc32(f"{key}/{draw}".encode())) % (2**31)


class JudgePredictor:
    def __init__(
        self,
        backend: JudgeBackend,
        predictor: str,
        sampling: SamplingConfig,
        n_cot: int = 1,
        seed: int = 42,
        renormalize: bool = False,
    ) -> None:
        if predictor not in PREDICTORS:
            raise ValueError(f"Unknown predictor {predictor!r}; choose one of {sorted(PREDICTORS)}.")
        self.spec = PREDICTORS[predictor]
        if backend.score_tokens.with_cot != self.spec.uses_cot:
            raise ValueError(f"Predictor {predictor!r} needs a backend built with with_cot={self.spec.uses_cot}.")
        self.backend = backend
        self.sampling = sampling
        self.n_cot = n_cot
        self.seed = seed
        self.renormalize = renormalize
        self.literals = list(backend.score_tokens.score_format.values)
        self.values = backend.score_tokens.numeric_values

    @classmethod
    def from_config(
        cls, backend: JudgeBackend, config: "JudgeConfig", n_cot: int | None = None, seed: int | None = None
    ) -> "JudgePredictor":
        """The predictor a judge config names; ``n_cot``/``seed`` default to the config's."""
        return cls(
            backend,
            config.predictor,
            config.sampling_config(),
            config.n_cot if n_cot is None else n_cot,
            config.seed if seed is None else seed,
            config.renormalize_scores,
        )

    def predict(self, prompts: list[JudgePrompt], keys: list[str]) -> list[JudgePrediction]:
        """Predictions for a batch; ``keys`` identify the examples (they seed sampling)."""
        if self.spec.uses_cot:
            return self._predict_with_cot(prompts, keys)
        return self._predict_without_cot(prompts, keys)

    def _predict_with_cot(self, prompts: list[JudgePrompt], keys: list[str]) -> list[JudgePrediction]:
        expanded = [prompt for prompt in prompts for _ in range(self.n_cot)]
        seeds = [example_seed(self.seed, key, draw) for key in keys for draw in range(self.n_cot)]
        samples = self.backend.sample_cots(expanded, self.sampling, seeds)
        predictions = []
        for index, key in enumerate(keys):
            group = samples[index * self.n_cot : (index + 1) * self.n_cot]
            probs = [sample.score_probs for sample in group]
            prediction = self._reduce(probs, key)
            prediction.cots = [sample.cot for sample in group]
            prediction.closed_by = [sample.closed_by for sample in group]
            prediction.generated_tokens = [sample.generated_tokens for sample in group]
            predictions.append(prediction)
        return predictions

    def _predict_without_cot(self, prompts: list[JudgePrompt], keys: list[str]) -> list[JudgePrediction]:
        draws = self.n_cot if self.spec.decodes else 1
        all_probs = self.backend.score_prompts(prompts)
        return [self._reduce([probs] * draws, key) for probs, key in zip(all_probs, keys, strict=True)]

    def _reduce(self, probs_per_draw: list[list[float]], key: str) -> JudgePrediction:
        scores = []
        for draw, probs in enumerate(probs_per_draw):
            if self.spec.decodes:
                rng = np.random.default_rng(example_seed(self.seed, key, draw))
                scores.append(sample_score(probs, self.values, self.sampling.temperature, rng))
            else:
                scores.append(expected_score(probs, self.values, self.renormalize))
        return JudgePrediction(
            score=float(np.mean(scores)),
            cot_scores=scores,
            score_probs=[dict(zip(self.literals, probs, strict=True)) for probs in probs_per_draw],
        )
