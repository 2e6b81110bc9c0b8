"""Benchmark runners: one timing loop and one statistics module, with a backend per runtime."""
