"""TRACT (Two-stage Regression-Aware fine-tuning with CoT) for LLM-as-a-judge, as a LLaMA-Factory plugin."""

__version__ = "0.1.0"
