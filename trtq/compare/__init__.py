"""Comparators: per-tensor scales against an independent computation (and, later, model outputs)."""
