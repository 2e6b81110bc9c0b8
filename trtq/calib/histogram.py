"""TensorRT's per-tensor calibration histogram: 2048 bins of |x| over [0, range], range grown by doubling.

The first batch fixes the range at its max |x|. When a later batch exceeds it, the range doubles
(adjacent bins merge in pairs, keeping 2048 bins) as often as needed, so the final histogram, and
every threshold computed from it, depends on batch order, as TensorRT's does.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

NUM_BINS = 2048
Counts = npt.NDArray[np.int64]
_scratch = threading.local()


def _scratch_buffers(size: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.intp]]:
    """Per-thread buffers reused across updates: fresh large allocations cost page faults on every batch."""
    magnitudes: npt.NDArray[np.float32] | None = getattr(_scratch, "magnitudes", None)
    if magnitudes is None or magnitudes.size < size:
        magnitudes = np.empty(size, dtype=np.float32)
        _scratch.magnitudes = magnitudes
        _scratch.indices = np.empty(size, dtype=np.intp)
    indices: npt.NDArray[np.intp] = _scratch.indices
    return magnitudes[:size], indices[:size]


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
        flat = np.asarray(values, dtype=np.float32).ravel()
        if flat.size == 0:
            return
        magnitudes, indices = _scratch_buffers(flat.size)
        np.abs(flat, out=magnitudes)
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
        self.counts += self._bin(magnitudes, indices)

    def _grow_to(self, batch_max: float) -> None:
        while batch_max > self.range:
            merged = self.counts.reshape(-1, 2).sum(axis=1)
            self.counts = np.concatenate([merged, np.zeros(self.num_bins - merged.size, dtype=np.int64)])
            self.range *= 2.0
            self.doublings += 1

    def _bin(self, magnitudes: npt.NDArray[np.float32], indices: npt.NDArray[np.intp]) -> Counts:
        # bin = floor(|x| * bins / range) in float32; |x| == range lands in bin `bins` and is folded
        # into the last bin. intp indices spare bincount a conversion copy.
        np.multiply(magnitudes, np.float32(self.num_bins / self.range), out=magnitudes)
        np.copyto(indices, magnitudes, casting="unsafe")
        counts = np.bincount(indices, minlength=self.num_bins + 1).astype(np.int64, copy=False)
        counts[self.num_bins - 1] += counts[self.num_bins :].sum()
        return counts[: self.num_bins]
