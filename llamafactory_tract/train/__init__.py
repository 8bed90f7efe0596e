"""Training stages; ``cotraft`` is shaped like LLaMA-Factory's ``train/sft``."""
