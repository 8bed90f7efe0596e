"""``tract demo``: Algorithm 1 at CPU scale on SmolLM2-135M; its recipes ship in ``recipes/``."""
