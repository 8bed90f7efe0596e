"""Judge inference: CoT sampling and score-token probabilities behind one backend interface."""

from llamafactory_tract.judge.backend import CoTSample, JudgeBackend, JudgePrompt, SamplingConfig
from llamafactory_tract.judge.predictors import PREDICTORS, JudgePrediction, JudgePredictor
from llamafactory_tract.judge.score_context import ScoreContextBuilder

__all__ = [
    "PREDICTORS",
    "CoTSample",
    "JudgeBackend",
    "JudgePrediction",
    "JudgePredictor",
    "JudgePrompt",
    "SamplingConfig",
    "ScoreContextBuilder",
]
