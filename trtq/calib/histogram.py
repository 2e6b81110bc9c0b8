"""TensorRT's per-tensor calibration histogram: 2048 bins of |x| over [0, range], range grown by doubling.

The first batch fixes the range at its max |x|. When a later batch exceeds it, the range doubles
(adjacent bins merge in pairs, keeping 2048 bins) as often as needed, so the final histogram, and
every threshold computed from it, depends on batch order, as TensorRT's does.

Binning streams each tensor through cache-sized chunks (scale and truncate in one ufunc call, then
``np.bincount``), so no tensor-sized temporary is made. A batch's values may be binned in any split
(counts add up exactly) once the batch's range is known, which lets ``update_batch`` spread one
batch over threads without changing a single count.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np
import numpy.typing as npt

from trtq.errors import TrtqError

NUM_BINS = 2048
CHUNK = 1 << 16
"""Values scaled and counted per step: the scratch stays in the core's cache."""
Counts = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]
_scratch = threading.local()


class NonFiniteError(FloatingPointError):
    """A NaN or infinite activation: it has no usable scale."""

    def __init__(self, tensor: str) -> None:
        super().__init__(f"tensor '{tensor}' contains NaN or infinity")
        self.tensor = tensor


def _scratch_buffers() -> tuple[FloatArray, npt.NDArray[np.intp]]:
    """Per-thread chunk buffers (|x| and bin indices), reused for every chunk of every tensor."""
    buffers: tuple[FloatArray, npt.NDArray[np.intp]] | None = getattr(_scratch, "buffers", None)
    if buffers is None or buffers[0].size < CHUNK:
        buffers = (np.empty(CHUNK, dtype=np.float32), np.empty(CHUNK, dtype=np.intp))
        _scratch.buffers = buffers
    return buffers


def value_bounds(flat: FloatArray) -> tuple[float, float]:
    """(min, max) of the values, NaN if any is NaN; chunk by chunk so the second pass reads from cache."""
    lows = np.empty(-(-flat.size // CHUNK), dtype=np.float32)
    highs = np.empty_like(lows)
    for index, start in enumerate(range(0, flat.size, CHUNK)):
        chunk = flat[start : start + CHUNK]
        lows[index] = chunk.min()
        highs[index] = chunk.max()
    return float(lows.min()), float(highs.max())


def bin_counts(flat: FloatArray, scale: np.float32, signed: bool, num_bins: int = NUM_BINS) -> Counts:
    """Counts of floor(|x| * scale) in float32, as num_bins + 1 bins (the last one: |x| == range).

    ``signed``: some values may be negative (else |x| is x and the abs step is skipped). With
    |x| <= range and scale = float32(num_bins / range), the float32 product never passes num_bins.
    """
    magnitudes, indices = _scratch_buffers()
    counts = np.zeros(num_bins + 1, dtype=np.int64)
    for start in range(0, flat.size, CHUNK):
        chunk = flat[start : start + CHUNK]
        size = chunk.size
        if signed:
            chunk = np.abs(chunk, out=magnitudes[:size])
        # float32 product, truncated to an integer on output: the same bin as scaling then casting.
        np.multiply(chunk, scale, out=indices[:size], casting="unsafe")
        # ufunc.at (fast since NumPy 1.25) adds in place: no min/max pre-pass, no per-chunk array.
        np.add.at(counts, indices[:size], 1)
    return counts


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
        low, high = value_bounds(flat)
        scale = self.start_batch(low, high, flat.size, "")
        if scale is not None:
            self.add_counts(bin_counts(flat, scale, low < 0, self.num_bins))

    def start_batch(self, low: float, high: float, size: int, tensor: str) -> np.float32 | None:
        """Take a batch's bounds: record max |x|, set or grow the range; the scale to bin it with.

        None when the batch is all zeros (its values are counted in bin 0 here).
        """
        batch_max = float(np.maximum(high, -low))
        if not np.isfinite(batch_max):
            raise NonFiniteError(tensor)
        self.max_abs = max(self.max_abs, batch_max)
        if batch_max == 0.0:
            self.counts[0] += size
            return None
        if self.range == 0.0:
            self.range = batch_max
        else:
            self._grow_to(batch_max)
        with np.errstate(over="ignore"):
            scale = np.float32(self.num_bins / self.range)
        if not np.isfinite(scale):  # max |x| below 2048 / FLT_MAX (about 6e-36): no float32 bin width
            raise TrtqError(
                f"{f'tensor {tensor!r}' if tensor else 'an activation'} has max |x| {self.range:.3g}, "
                "too small for a float32 calibration histogram; check the preprocessing and the model"
            )
        return scale

    def add_counts(self, counts: Counts) -> None:
        """Add ``bin_counts`` output: values equal to the range fold into the last bin."""
        self.counts += counts[: self.num_bins]
        self.counts[-1] += counts[self.num_bins :].sum()

    def _grow_to(self, batch_max: float) -> None:
        while batch_max > self.range:
            merged = self.counts.reshape(-1, 2).sum(axis=1)
            self.counts = np.concatenate([merged, np.zeros(self.num_bins - merged.size, dtype=np.int64)])
            self.range *= 2.0
            self.doublings += 1


PIECE = 16 * CHUNK
"""Tensors are cut into pieces of at most this many values to balance threads."""


@dataclass(frozen=True)
class _Piece:
    tensor: int
    values: FloatArray


def _shares(flats: Sequence[FloatArray], parts: int) -> list[list[_Piece]]:
    """All values as pieces, in ``parts`` consecutive runs of about equal size (one task per thread)."""
    pieces = [
        _Piece(index, flat[start : start + PIECE])
        for index, flat in enumerate(flats)
        for start in range(0, flat.size, PIECE)
    ]
    ends = np.cumsum([piece.values.size for piece in pieces])
    cuts = np.searchsorted(ends, ends[-1] * np.arange(1, parts) / parts) if pieces else []
    bounds = [0, *(int(cut) + 1 for cut in cuts), len(pieces)]
    return [pieces[a:b] for a, b in pairwise(bounds) if b > a]


def _share_bounds(share: list[_Piece]) -> list[tuple[float, float]]:
    return [value_bounds(piece.values) for piece in share]


def update_batch(
    histograms: Sequence[TrtHistogram],
    names: Sequence[str],
    activations: Sequence[npt.ArrayLike],
    pool: Executor,
    parts: int,
) -> None:
    """One batch for many tensors (histograms[i] gets activations[i]), its values spread over ``parts``.

    Bounds first (every piece), then the ranges, then counts with each tensor's scale for this batch:
    the same counts as ``update`` per tensor, whatever the split.
    """
    flats = [np.asarray(values, dtype=np.float32).ravel() for values in activations]
    shares = _shares(flats, parts)
    lows = [np.inf] * len(flats)
    highs = [-np.inf] * len(flats)
    for share, bounds in zip(shares, pool.map(_share_bounds, shares), strict=True):
        for piece, (low, high) in zip(share, bounds, strict=True):
            # np.minimum/np.maximum keep a NaN (Python's min and max may drop it)
            lows[piece.tensor] = float(np.minimum(lows[piece.tensor], low))
            highs[piece.tensor] = float(np.maximum(highs[piece.tensor], high))
    scales = [
        histogram.start_batch(low, high, flat.size, name) if flat.size else None
        for histogram, flat, low, high, name in zip(histograms, flats, lows, highs, names, strict=True)
    ]

    def share_counts(share: list[_Piece]) -> list[tuple[int, Counts]]:
        return [
            (
                piece.tensor,
                bin_counts(piece.values, scale, lows[piece.tensor] < 0, histograms[piece.tensor].num_bins),
            )
            for piece in share
            if (scale := scales[piece.tensor]) is not None
        ]

    totals: dict[int, Counts] = {}
    for counts in pool.map(share_counts, shares):
        for tensor, piece_counts in counts:
            totals[tensor] = totals[tensor] + piece_counts if tensor in totals else piece_counts
    for tensor, total in totals.items():
        histograms[tensor].add_counts(total)
