"""TensorRT's per-tensor calibration histogram: 2048 bins of |x| over [0, range], range grown by doubling.

The first batch fixes the range at its max |x|. When a later batch exceeds it, the range doubles
(adjacent bins merge in pairs, keeping 2048 bins) as often as needed, so the final histogram, and
every threshold computed from it, depends on batch order, as TensorRT's does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

NUM_BINS = 2048
Counts = npt.NDArray[np.int64]


@dataclass
class TrtHistogram:
    num_bins: int = NUM_BINS
    counts: Counts = field(default_factory=lambda: np.zeros(NUM_BINS, dtype=np.int64))
    range: float = 0.0
    """Upper edge of the last bin; 0 until a batch with a non-zero value arrives."""
    max_abs: float = 0.0
    """Exact max |x| seen over all batches (the MinMax threshold)."""
    doublings: int = 0
    """How often the range doubled after the first batch (batch-order sensitivity at a glance)."""

    def __post_init__(self) -> None:
        if self.counts.shape != (self.num_bins,):
            self.counts = np.zeros(self.num_bins, dtype=np.int64)

    @property
    def bin_width(self) -> float:
        return self.range / self.num_bins

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def update(self, values: npt.ArrayLike) -> None:
        """Add one batch. Non-finite values are an error: a NaN or inf activation has no usable scale."""
        magnitudes = np.abs(np.asarray(values, dtype=np.float32)).ravel()
        if magnitudes.size == 0:
            return
        batch_max = float(magnitudes.max())
        if not np.isfinite(batch_max):
            raise FloatingPointError("activation contains NaN or infinity")
        self.max_abs = max(self.max_abs, batch_max)
        if batch_max == 0.0:
            self.counts[0] += magnitudes.size
            return
        if self.range == 0.0:
            self.range = batch_max
        else:
            self._grow_to(batch_max)
        self.counts += self._bin(magnitudes)

    def _grow_to(self, batch_max: float) -> None:
        while batch_max > self.range:
            merged = self.counts.reshape(-1, 2).sum(axis=1)
            self.counts = np.concatenate([merged, np.zeros(self.num_bins - merged.size, dtype=np.int64)])
            self.range *= 2.0
            self.doublings += 1

    def _bin(self, magnitudes: npt.NDArray[np.float32]) -> Counts:
        # In place on our own copy: |x| * (bins / range), truncated, the top edge folded into the last bin.
        np.multiply(magnitudes, np.float32(self.num_bins / self.range), out=magnitudes)
        indices = magnitudes.astype(np.int32)
        np.minimum(indices, self.num_bins - 1, out=indices)
        return np.bincount(indices, minlength=self.num_bins).astype(np.int64, copy=False)
