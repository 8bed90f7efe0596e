"""Algorithm 1 (``tract pipeline``): stage 1, D_self generation, stage 2, evaluation."""
