"""Comparators: a cache's scales against NumPy's (crosscheck), FP32 against INT8 model outputs, and
per-tensor sensitivity."""
