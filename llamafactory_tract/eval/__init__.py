"""Benchmark evaluation (``tract eval``): datasets, metrics, the Table 2 report."""
