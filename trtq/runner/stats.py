"""trtexec's statistics: its percentile rule (in float32, as trtexec computes it), median, CoV."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """trtexec's findPercentile: drop int((1 - p/100) * N) values from the top, in float32 arithmetic.

    float32 matters: for p = 90 and N = 10, float32 gives (1 - 0.9f) * 10 = 1.0000002, so one value
    is excluded; float64 would give 0.9999999999999998 and exclude none.
    """
    if not sorted_values:
        return float("nan")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be in [0, 100], got {p}")
    count = len(sorted_values)
    exclude = int(np.float32(np.float32(1) - np.float32(p) / np.float32(100)) * np.float32(count))
    return float(sorted_values[max(count - 1 - exclude, 0)])


def median(sorted_values: Sequence[float]) -> float:
    count = len(sorted_values)
    if count == 0:
        return float("nan")
    middle = count // 2
    if count % 2:
        return float(sorted_values[middle])
    return (float(sorted_values[middle - 1]) + float(sorted_values[middle])) / 2


@dataclass(frozen=True)
class Summary:
    minimum: float
    maximum: float
    mean: float
    median: float
    percentiles: dict[float, float]
    cov_percent: float
    """Coefficient of variation: population std / mean, in percent."""

    def to_json(self) -> dict[str, float | dict[str, float]]:
        return {
            "min": self.minimum,
            "max": self.maximum,
            "mean": self.mean,
            "median": self.median,
            "percentiles": {f"{p:g}": v for p, v in self.percentiles.items()},
            "cov_percent": self.cov_percent,
        }


def summarize(values: Sequence[float], percentiles: Sequence[float]) -> Summary:
    ordered = sorted(float(v) for v in values)
    if not ordered:
        raise ValueError("no timings to summarize")
    array = np.asarray(ordered)
    mean = float(array.mean())
    return Summary(
        minimum=ordered[0],
        maximum=ordered[-1],
        mean=mean,
        median=median(ordered),
        percentiles={p: percentile(ordered, p) for p in percentiles},
        cov_percent=float(array.std() / mean * 100) if mean else 0.0,
    )
