"""Cross-check a calibration cache (TensorRT's or anyone's) against trtq's NumPy entropy scales.

The NumPy side sees the same calibration batches in the same order, so where TensorRT followed the
rules trtq reimplements, the ratio of the two scales is 1; large ratios point at tensors whose
histogram, range growth or KL pick differ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from trtq.cache.trt_format import CalibrationCache


@dataclass(frozen=True)
class ScaleComparison:
    tensor: str
    cache_scale: float
    numpy_scale: float

    @property
    def ratio(self) -> float:
        """cache / numpy; 1 when both are zero, inf when only numpy's is zero."""
        if self.cache_scale == self.numpy_scale:
            return 1.0
        if self.numpy_scale == 0:
            return math.inf
        return self.cache_scale / self.numpy_scale

    @property
    def log_ratio(self) -> float:
        ratio = self.ratio
        if ratio == 0 or math.isinf(ratio):
            return math.inf
        return abs(math.log(ratio))


@dataclass(frozen=True)
class CrossCheck:
    compared: list[ScaleComparison]
    """Tensors on both sides, worst (largest |log ratio|) first."""
    only_in_cache: list[str]
    only_in_numpy: list[str]

    @property
    def median_abs_log_ratio(self) -> float:
        return float(np.median([c.log_ratio for c in self.compared])) if self.compared else math.nan

    def share_within(self, tolerance: float) -> float:
        if not self.compared:
            return math.nan
        return sum(1 for c in self.compared if abs(c.ratio - 1) <= tolerance) / len(self.compared)

    def summary_line(self) -> str:
        return (
            f"{len(self.compared)} tensors compared: median |log ratio| {self.median_abs_log_ratio:.4g}, "
            f"{100 * self.share_within(0.01):.1f}% within 1%, "
            f"{100 * self.share_within(0.10):.1f}% within 10%; "
            f"{len(self.only_in_cache)} only in the cache, {len(self.only_in_numpy)} only in NumPy"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "summary": {
                "compared": len(self.compared),
                "median_abs_log_ratio": self.median_abs_log_ratio,
                "within_1_percent": self.share_within(0.01),
                "within_10_percent": self.share_within(0.10),
                "only_in_cache": len(self.only_in_cache),
                "only_in_numpy": len(self.only_in_numpy),
            },
            "tensors": [
                {
                    "tensor": c.tensor,
                    "cache_scale": c.cache_scale,
                    "numpy_scale": c.numpy_scale,
                    "ratio": c.ratio,  # inf (numpy's scale 0) is written as null
                }
                for c in self.compared
            ],
            "only_in_cache": self.only_in_cache,
            "only_in_numpy": self.only_in_numpy,
        }


def cross_check(cache: CalibrationCache, numpy_scales: dict[str, float]) -> CrossCheck:
    both = [name for name in cache.scales if name in numpy_scales]
    compared = sorted(
        (ScaleComparison(name, cache.scales[name], numpy_scales[name]) for name in both),
        key=lambda c: (-c.log_ratio, c.tensor),
    )
    return CrossCheck(
        compared=compared,
        only_in_cache=[name for name in cache.scales if name not in numpy_scales],
        only_in_numpy=[name for name in numpy_scales if name not in cache.scales],
    )
