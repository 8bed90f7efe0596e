"""Judge inference: CoT sampling and score-token probabilities behind one backend interface."""

from .backend import CoTSample, JudgeBackend, JudgePrompt, SamplingConfig
from .predictors import PREDICTORS, JudgePrediction, JudgePredictor
from .score_context import ScoreContextBuilder

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
