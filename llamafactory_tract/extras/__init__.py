"""Extras shared by every part of the plugin (logging under LLaMA-Factory's logger)."""
