"""TensorRT's per-tensor calibration histogram: 2048 bins of |x| over [0, range], range grown by doubling.

The first batch fixes the range at its max |x|. When a later batch exceeds it, the range doubles
(adjacent bins merge in pairs, keeping 2048 bins) as often as needed, so the final histogram, and
every threshold computed from it, depends on batch order, as TensorRT's does.

Binning is one compiled pass per value (trtq/calib/binning.py) at the range the histogram already
has: a batch whose max |x| stays within it, as nearly every batch after the first does, is read once.
A batch that grows the range (and the first batch) has its max taken first and is then counted at
the new range. A batch's values may be counted in any split (counts add up exactly), which lets
``update_batch`` spread one batch over threads without changing a single count.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np
import numpy.typing as npt

from trtq.errors import TrtqError
from trtq.numeric import FLOAT32_MAX

NUM_BINS = 2048
CHUNK = 1 << 15
"""Values whose max is checked just before they are counted: they are still in the core's cache
(128 KB: within a core's L2; 0.51 ns a value against 0.54 at 16 KB, benchmarks/binning.py's kernel)."""
PIECE = 1 << 20
"""Tensors are cut into pieces of at most this many values to balance threads."""
MAX_RUN = 1 << 30
"""Most values one kernel call counts (a thread's adjacent pieces of one tensor are one call): well
within the kernel's 32-bit lane counters."""
Counts = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]
Mapper = Callable[[Callable[[Any], Any], Iterable[Any]], Iterable[Any]]
"""``map`` or ``Executor.map``: how the pieces of a batch are spread."""


def bin_scales(num_bins: int, ranges: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    """TensorRT's rule for the factor that maps |x| to its bin: num_bins / range, rounded to float32
    (inf where that overflows float32, for a range too small to bin)."""
    with np.errstate(over="ignore", divide="ignore"):
        return (num_bins / ranges).astype(np.float32)


class NonFiniteError(FloatingPointError):
    """A NaN or infinite activation: it has no usable scale."""

    def __init__(self, tensor: str) -> None:
        super().__init__(f"tensor '{tensor}' contains NaN or infinity")
        self.tensor = tensor


def binning_compiled() -> bool:
    """False under NUMBA_DISABLE_JIT: the kernels then run as Python, hundreds of times slower."""
    return os.environ.get("NUMBA_DISABLE_JIT", "0").strip() in ("", "0")


@functools.cache
def load_binning_in_background() -> None:
    """Import Numba and load the compiled kernels (about 0.4 s) on a thread, overlapping whatever the
    caller does next (reading the model, hashing, the first images); the first count waits for it."""
    threading.Thread(target=_load_binning, name="trtq-binning-load", daemon=True).start()


def _load_binning() -> None:
    try:
        from trtq.calib.binning import load_kernels

        load_kernels()
    except Exception:  # the same failure is raised where binning is used, with its message
        pass


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

    def threshold_at(self, bins: float) -> np.float32:
        """The threshold ``bins`` bin widths up, as TensorRT's thresholds are computed: float32(bins) *
        (float32(range) / num_bins), all in float32; inf beyond float32's largest value, for the
        caller that needs a scale to refuse (CalibrationRun.scales)."""
        with np.errstate(over="ignore"):
            return np.float32(np.float32(bins) * (np.float32(self.range) / np.float32(self.num_bins)))

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def update(self, values: npt.ArrayLike) -> None:
        """Add one batch. Non-finite values are an error: a NaN or inf activation has no usable scale."""
        _update([self], [""], [values], map, 1)

    def scale(self) -> np.float32 | None:
        """The float32 factor that maps |x| to its bin at the current range (None before any range)."""
        if self.range == 0.0:
            return None
        scale: np.float32 = bin_scales(self.num_bins, np.array([self.range]))[0]
        return scale

    def start_batch(self, batch_max: float, size: int, tensor: str) -> np.float32 | None:
        """Take a batch's max |x|: record it, set or grow the range; the scale to bin the batch with.

        None when the batch is all zeros (its values are counted in bin 0 here).
        """
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
        scale = self.scale()
        if scale is None or not np.isfinite(scale):  # max |x| below 2048 / FLT_MAX (about 6e-36)
            raise TrtqError(
                f"{f'tensor {tensor!r}' if tensor else 'an activation'} has max |x| {self.range:.3g}, "
                "too small for a float32 calibration histogram; check the preprocessing and the model"
            )
        return scale

    def add_counts(self, counts: Counts) -> None:
        """Add counts over num_bins + 1 bins: values equal to the range fold into the last bin."""
        self.counts += counts[: self.num_bins]
        self.counts[-1] += counts[self.num_bins :].sum()

    def add_within_range(self, batch_max: float, counts: Counts) -> None:
        """Add a batch counted at the current range whose every |x| was within it (its max finite
        and at most the range): the range stays, so only the max and the counts change."""
        self.max_abs = max(self.max_abs, batch_max)
        self.add_counts(counts)

    def _grow_to(self, batch_max: float) -> None:
        if batch_max > self.range and self.num_bins % 2:
            raise ValueError(f"{self.num_bins} bins cannot merge in pairs: the range cannot double")
        while batch_max > self.range:
            merged = self.counts.reshape(-1, 2).sum(axis=1)
            self.counts = np.concatenate([merged, np.zeros(self.num_bins - merged.size, dtype=np.int64)])
            self.range *= 2.0
            self.doublings += 1


@dataclass(frozen=True)
class _Piece:
    tensor: int
    values: FloatArray


def _shares(flats: Sequence[FloatArray], parts: int) -> list[list[_Piece]]:
    """All values in ``parts`` consecutive runs of about equal size (one task each), cut at piece
    bounds; within a run, a tensor's pieces are one slice (one kernel call)."""
    pieces = [
        (index, start, min(start + PIECE, flat.size))
        for index, flat in enumerate(flats)
        for start in range(0, flat.size, PIECE)
    ]
    ends = np.cumsum([stop - start for _, start, stop in pieces])
    cuts = np.searchsorted(ends, ends[-1] * np.arange(1, parts) / parts) if pieces else []
    bounds = [0, *(int(cut) + 1 for cut in cuts), len(pieces)]
    shares = []
    for a, b in pairwise(bounds):
        runs: list[list[int]] = []
        for tensor, start, stop in pieces[a:b]:
            if runs and runs[-1][0] == tensor and stop - runs[-1][1] <= MAX_RUN:
                runs[-1][2] = stop
            else:
                runs.append([tensor, start, stop])
        if runs:
            shares.append([_Piece(tensor, flats[tensor][start:stop]) for tensor, start, stop in runs])
    return shares


def _count_at(
    histograms: Sequence[TrtHistogram], flats: Sequence[FloatArray], mapper: Mapper, parts: int
) -> tuple[list[float], list[Counts | None]]:
    """Each tensor's max |x| and counts at its histogram's current range (None: a value beyond it).
    Every flat must hold at least one value (``_update`` passes only those)."""
    from trtq.calib.binning import Binning  # imports Numba: only when something is binned

    groups: dict[int, list[int]] = {}
    for position, histogram in enumerate(histograms):
        groups.setdefault(histogram.num_bins, []).append(position)
    if len(groups) > 1:  # histograms of different sizes (library use): one round per size
        tops: list[float] = [0.0] * len(flats)
        totals: list[Counts | None] = [None] * len(flats)
        for positions in groups.values():
            group = [histograms[p] for p in positions], [flats[p] for p in positions]
            for position, top, total in zip(positions, *_count_at(*group, mapper, parts), strict=True):
                tops[position], totals[position] = top, total
        return tops, totals
    num_bins = next(iter(groups), NUM_BINS)
    ranges = np.array([histogram.range for histogram in histograms], dtype=np.float64)
    has_range = ranges != 0.0  # the others have no range yet: their max comes first
    binning = Binning.checked(
        np.where(has_range, bin_scales(num_bins, ranges), np.float32(1.0)),
        np.where(has_range, np.minimum(ranges, FLOAT32_MAX), 0.0),
        num_bins,
    )

    def share_counts(share: list[_Piece]) -> dict[int, tuple[float, Counts | None]]:
        """Per tensor of the share: its pieces' max |x| and summed counts (None: one went beyond)."""
        found: dict[int, tuple[float, Counts | None]] = {}
        lanes = binning.new_lanes()  # per bin counters: reused by every piece
        for piece in share:
            if not has_range[piece.tensor]:
                found[piece.tensor] = (np.inf, None)
                continue
            top, counts = found.get(piece.tensor) or (0.0, binning.new_totals())
            if counts is None:  # an earlier piece went beyond the range: the tensor is counted again
                continue
            piece_top, complete = binning.count_into(piece.tensor, piece.values, counts, lanes, CHUNK)
            found[piece.tensor] = (max(top, piece_top), counts if complete else None)
        return found

    maxima = [0.0] * len(flats)
    summed: dict[int, Counts | None] = {}  # a tensor counted by one share keeps that share's array
    for found in mapper(share_counts, _shares(flats, parts)):
        for tensor, (top, counts) in found.items():
            maxima[tensor] = max(maxima[tensor], top)
            if tensor not in summed:
                summed[tensor] = counts
            elif (total := summed[tensor]) is None or counts is None:
                summed[tensor] = None
            else:
                total += counts
    return maxima, [summed[tensor] for tensor in range(len(flats))]


def _update(
    histograms: Sequence[TrtHistogram],
    names: Sequence[str],
    activations: Sequence[npt.ArrayLike],
    mapper: Mapper,
    parts: int,
) -> None:
    """Count each tensor at its histogram's current range, reading every value once: the right counts
    unless a value lies beyond that range. Only those tensors (all of them on the first batch) are
    read again: the exact max first, which sets or grows the range, then the counts at that range."""
    from trtq.calib.binning import max_abs  # imports Numba: only when something is binned

    if not len(histograms) == len(names) == len(activations):
        raise ValueError(
            f"{len(histograms)} histograms, {len(names)} names and {len(activations)} activations: one each"
        )
    arrays = [np.asarray(values) for values in activations]
    for name, array in zip(names, arrays, strict=True):
        if np.iscomplexobj(array):  # float32 would drop the imaginary part without a word
            who = f"tensor {name!r}" if name else "an activation"
            raise TypeError(f"{who} is complex; calibration histograms take real values")
    flats = [np.ascontiguousarray(array.astype(np.float32, copy=False).ravel()) for array in arrays]
    live = [index for index, flat in enumerate(flats) if flat.size]
    tops, totals = _count_at([histograms[i] for i in live], [flats[i] for i in live], mapper, parts)
    regrown: list[int] = []
    for index, top, total in zip(live, tops, totals, strict=True):
        # A max within the float32 limit can still exceed a range that is no float32 (set by hand).
        if total is None or top > histograms[index].range:
            regrown.append(index)
        else:  # the batch cannot grow the range, and the counts stand
            histograms[index].add_within_range(top, total)
    if not regrown:
        return
    # First batch, or the range grows: exact max of every value, then the counts at the new range.
    maxima = [0.0] * len(regrown)
    for found in mapper(
        lambda share: [(piece.tensor, max_abs(piece.values)) for piece in share],
        _shares([flats[i] for i in regrown], parts),
    ):
        for position, top in found:
            maxima[position] = float(np.maximum(maxima[position], top))  # keeps a NaN
    again = [
        position
        for position, index in enumerate(regrown)
        if histograms[index].start_batch(maxima[position], flats[index].size, names[index]) is not None
    ]
    _, recounted = _count_at(
        [histograms[regrown[p]] for p in again], [flats[regrown[p]] for p in again], mapper, parts
    )
    for position, counts in zip(again, recounted, strict=True):
        if counts is None:
            raise AssertionError(f"tensor {names[regrown[position]]!r} exceeds the range its own max set")
        histograms[regrown[position]].add_counts(counts)


def update_batch(
    histograms: Sequence[TrtHistogram],
    names: Sequence[str],
    activations: Sequence[npt.ArrayLike],
    pool: Executor,
    parts: int,
) -> None:
    """One batch for many tensors (histograms[i] gets activations[i]), its values spread over ``parts``
    tasks on ``pool``: the same counts as ``TrtHistogram.update`` per tensor, whatever the split."""
    _update(histograms, names, activations, pool.map, parts)
