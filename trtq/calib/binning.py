"""The loops of calibration, compiled: max |x| and TensorRT-rule bin counts in one pass per value,
and the entropy search's sums over quantization levels.

Every calibrated activation value must be scaled, truncated and counted. NumPy's cheapest exact
counting (``np.add.at`` or ``np.bincount`` on an index array) costs about 1.5 ns a value on real
activations, against 0.2 ns for reading the values once; Numba compiles the loop below to about
0.5 ns a value (benchmarks/binning.py), and releases the GIL so pieces of a batch bin on several
threads.

Numba compiles the kernels on first use (about a second) and caches them on disk;
trtq/calib/histogram.py imports this module only when it bins, so commands that never bin do not
import Numba, and loads it on a thread while the model is read.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import numpy.typing as npt
from numba.core.caching import NullCache

from trtq.numeric import QUANT_LEVELS  # a constant to Numba: the level edges compile to shifts

LANES = 4
"""Independent count rows, cycled value by value: runs of equal bins (a ReLU's zeros) then do not
wait on one another's increments. Summed when a piece is done. ``_count_block`` is unrolled for
exactly these four rows (and checks no index): change both together."""
MAX_PIECE = (1 << 32) - 1
"""Values one call may count: the lane counters are 32-bit."""
_ABS_MASK = 0x7FFFFFFF
"""Clears a float32's sign bit. For x >= 0, float32 order is the order of the bit patterns read as
int32, and inf and NaN are the patterns from 0x7F800000 up: the max of the masked bits is the bits of
max |x|, and is above any finite limit when a value is not finite."""


def _jit(func: Callable[..., Any]) -> Any:
    """Compiled without the GIL or bounds checks (callers keep every index in range); cached on disk
    where Numba finds a writable folder (beside this file or the user's cache), else compiled per run."""
    try:
        return numba.njit(nogil=True, boundscheck=False, cache=True)(func)
    except RuntimeError:  # Numba's "no locator available": nowhere to write its cache
        return numba.njit(nogil=True, boundscheck=False)(func)


@_jit
def _max_bits(values: Any) -> Any:
    bits = values.view(np.int32)
    top = np.int32(0)
    for i in range(bits.size):
        top = max(top, bits[i] & np.int32(_ABS_MASK))
    return top


@_jit
def _count_block(values: Any, scale: Any, counts: Any) -> None:
    # float32 |x| * float32 scale, truncated: the same bin as NumPy's float32 product cast to int.
    # Truncated to an unsigned index: Numba then adds no negative-index wraparound to each
    # increment (28% faster, benchmarks/binning.py); the product is never negative. Rows 0-3: the
    # LANES rows.
    n = values.size
    i = 0
    while i + 4 <= n:
        counts[0, np.uint32(abs(values[i]) * scale)] += 1
        counts[1, np.uint32(abs(values[i + 1]) * scale)] += 1
        counts[2, np.uint32(abs(values[i + 2]) * scale)] += 1
        counts[3, np.uint32(abs(values[i + 3]) * scale)] += 1
        i += 4
    while i < n:
        counts[0, np.uint32(abs(values[i]) * scale)] += 1
        i += 1


@_jit
def _scan(values: Any, scale: Any, limit_bits: Any, lanes: Any, block: Any, totals: Any) -> Any:
    # Block by block: the block's max |x| first (the counting then reads it from cache); a block with
    # a value above the limit (or not finite) ends the scan before it is counted, and leaves totals
    # as they were. Otherwise the lanes are added into totals (int64, one per bin).
    lanes[:] = 0
    top = np.int32(0)
    for start in range(0, values.size, block):
        part = values[start : start + block]
        part_top = _max_bits(part)
        top = max(top, part_top)
        if part_top > limit_bits:
            return top, False
        _count_block(part, scale, lanes)
    for j in range(totals.size):
        totals[j] += np.int64(lanes[0, j]) + lanes[1, j] + lanes[2, j] + lanes[3, j]
    return top, True


@_jit
def _level_sums(run_term: Any, widths: Any, candidates: Any, out: Any) -> None:
    # Per candidate i, the sum over levels k of run_term[start * widths + width], level k covering
    # bins [ceil(k i / 128), ceil((k + 1) i / 128)), added in NumPy's order for a row of 128 values
    # (pairwise_sum: eight running sums, then combined pairwise): bit for bit the NumPy sum.
    for c in range(candidates.size):
        i = candidates[c]
        s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
        for k in range(0, QUANT_LEVELS, 8):
            e0 = (k * i + QUANT_LEVELS - 1) // QUANT_LEVELS
            e1 = ((k + 1) * i + QUANT_LEVELS - 1) // QUANT_LEVELS
            e2 = ((k + 2) * i + QUANT_LEVELS - 1) // QUANT_LEVELS
            e3 = ((k + 3) * i + QUANT_LEVELS - 1) // QUANT_LEVELS
            e4 = ((k + 4) * i + QUANT_LEVELS - 1) // QUANT_LEVELS
            e5 = ((k + 5) * i + QUANT_LEVELS - 1) // QUANT_LEVELS
            e6 = ((k + 6) * i + QUANT_LEVELS - 1) // QUANT_LEVELS
            e7 = ((k + 7) * i + QUANT_LEVELS - 1) // QUANT_LEVELS
            e8 = ((k + 8) * i + QUANT_LEVELS - 1) // QUANT_LEVELS
            s0 += run_term[e0 * widths + e1 - e0]
            s1 += run_term[e1 * widths + e2 - e1]
            s2 += run_term[e2 * widths + e3 - e2]
            s3 += run_term[e3 * widths + e4 - e3]
            s4 += run_term[e4 * widths + e5 - e4]
            s5 += run_term[e5 * widths + e6 - e5]
            s6 += run_term[e6 * widths + e7 - e6]
            s7 += run_term[e7 * widths + e8 - e7]
        out[c] = ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


def level_sums(
    run_term: npt.NDArray[np.float64], widths: int, candidates: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    """Per candidate (bins kept, >= 128), the sum over its 128 levels of run_term[start * widths +
    width], run_term being a raveled (bins + 1, widths) table of every run of bins."""
    most = int(candidates.max(initial=QUANT_LEVELS))
    if (
        run_term.dtype != np.float64
        or candidates.dtype != np.int64
        or candidates.min(initial=QUANT_LEVELS) < QUANT_LEVELS
    ):
        raise TypeError("level_sums takes float64 terms and int64 candidates of at least 128 bins")
    if (most + 1) * widths > run_term.size or widths <= -(-most // QUANT_LEVELS):
        raise ValueError(
            f"candidates up to {most} bins need a run table of {most + 1} x {-(-most // QUANT_LEVELS) + 1}"
        )
    load_kernels()
    out = np.empty(candidates.size, dtype=np.float64)
    _level_sums(np.ascontiguousarray(run_term), widths, np.ascontiguousarray(candidates), out)
    return out


@functools.cache
def load_kernels() -> None:
    """Compile the kernels, or load them from Numba's cache, once per process. A cache Numba cannot
    read or write (a corrupt index, a full disk: it raises either) must not stop calibration, so the
    kernels are then compiled in memory, as when no cache folder is writable."""

    def first_call() -> None:  # the argument types of every real call: one compiled signature each
        one = np.float32(1.0)
        _max_bits(np.ones(LANES, dtype=np.float32))
        _scan(
            np.ones(LANES, dtype=np.float32),
            one,
            one.view(np.int32),
            np.zeros((LANES, 2), np.uint32),
            LANES,
            np.zeros(2, np.int64),
        )
        _level_sums(
            np.zeros(2 * (QUANT_LEVELS + 1)), 2, np.array([QUANT_LEVELS], dtype=np.int64), np.zeros(1)
        )

    try:
        first_call()
    except Exception:
        for kernel in (_max_bits, _count_block, _scan, _level_sums):
            kernel._cache = NullCache()  # Numba's own no-cache object (Dispatcher.enable_caching's opposite)
        first_call()


def float_from_bits(bits: int) -> float:
    """The float32 whose bit pattern is ``bits`` (a max of masked bits), as a Python float."""
    return float(np.array(bits, dtype=np.int32).view(np.float32))


def max_abs(values: npt.NDArray[np.float32]) -> float:
    """Max |x| of float32 values; inf or NaN when any value is non-finite."""
    if values.dtype != np.float32:
        raise TypeError("max_abs takes float32 values")
    load_kernels()
    return float_from_bits(int(_max_bits(np.ascontiguousarray(values))))


@dataclass(frozen=True)
class Binning:
    """How each tensor of a batch is counted: checked once for all of them, then used for every
    piece of each.

    ``limit * scale`` must stay within the bins (checked here: the float32 product is monotonic, so
    every |x| <= limit lands in a bin; the kernel itself does not check indices)."""

    scales: npt.NDArray[np.float32]
    limit_bits: npt.NDArray[np.int32]
    """Each float32 limit's bit pattern: a block whose masked bits exceed it is not counted."""
    num_bins: int

    @classmethod
    def checked(
        cls, scales: npt.NDArray[np.float32], limits: npt.NDArray[np.float64], num_bins: int
    ) -> Binning:
        """Per tensor i: scales[i] (float32, as TensorRT's rule computes it) and the largest |x|
        it may count, limits[i]."""
        if scales.dtype != np.float32 or scales.shape != limits.shape or scales.ndim != 1:
            raise TypeError("binning takes one float32 scale per limit, as TensorRT's rule does")
        limits32 = limits.astype(np.float32)
        with np.errstate(over="ignore", invalid="ignore"):
            top_bins = np.floor(limits32 * scales)  # the bin of |x| == limit (inf or NaN: none)
        within = (
            np.isfinite(scales)
            & (scales > 0)
            & np.isfinite(limits32)
            & (limits32 >= 0)
            & (top_bins.astype(np.float64) <= num_bins)  # float64: exact for any num_bins, float32 is not
        )
        if not within.all():
            bad = int(np.flatnonzero(~within)[0])
            raise ValueError(f"scale {scales[bad]} with limit {limits[bad]} falls outside {num_bins} bins")
        load_kernels()
        return cls(scales, limits32.view(np.int32), num_bins)

    def new_totals(self) -> npt.NDArray[np.int64]:
        """Zero counts over num_bins + 1 bins, for ``count_into`` to add to."""
        return np.zeros(self.num_bins + 1, dtype=np.int64)

    def new_lanes(self) -> npt.NDArray[np.uint32]:
        """Scratch counters for ``count_into``: one set per task, reused piece after piece."""
        return np.empty((LANES, self.num_bins + 1), dtype=np.uint32)

    def count_into(
        self,
        tensor: int,
        values: npt.NDArray[np.float32],
        totals: npt.NDArray[np.int64],
        lanes: npt.NDArray[np.uint32],
        block: int,
    ) -> tuple[float, bool]:
        """Max |x| of the values (of tensor ``tensor``), and whether they were all within its limit
        and so were added to ``totals`` (num_bins + 1 bins, the last for |x| == limit). Otherwise
        totals are unchanged and the max covers only the values read so far."""
        if values.dtype != np.float32:
            raise TypeError("binning takes float32 values, as TensorRT's rule does")
        if values.size > MAX_PIECE:
            raise ValueError(f"{values.size} values in one piece; at most {MAX_PIECE}")
        if (
            totals.shape != (self.num_bins + 1,)
            or totals.dtype != np.int64
            or lanes.shape != (LANES, totals.size)
        ):
            raise ValueError(
                f"binning needs {self.num_bins + 1} int64 totals and ({LANES}, {self.num_bins + 1}) lanes"
            )
        top, complete = _scan(
            np.ascontiguousarray(values),
            self.scales[tensor],
            self.limit_bits[tensor],
            lanes,
            block,
            totals,
        )
        return float_from_bits(int(top)), bool(complete)


def scan_counts(
    values: npt.NDArray[np.float32], scale: np.float32, limit: float, num_bins: int, block: int
) -> tuple[float, npt.NDArray[np.int64] | None]:
    """Max |x| and the counts of floor(|x| * scale) over num_bins + 1 bins, if every |x| <= limit.

    Else (a value above the limit, or not finite) the counts are None and the max covers only the
    values read so far."""
    if not isinstance(scale, np.float32):
        raise TypeError("binning takes a float32 scale, as TensorRT's rule does")
    binning = Binning.checked(np.array([scale]), np.array([limit], dtype=np.float64), num_bins)
    totals = binning.new_totals()
    found, complete = binning.count_into(0, values, totals, binning.new_lanes(), block)
    return found, totals if complete else None
