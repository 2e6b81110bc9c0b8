"""Thresholds (amax) from a calibration histogram: entropy, minmax, percentile and mse.

All four read the same TensorRT-rule histogram, so one calibration pass yields every algorithm's
answer and they can be compared side by side.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from trtq.calib.entropy import FIRST_CANDIDATE, entropy_threshold
from trtq.calib.histogram import TrtHistogram
from trtq.config.schema import Algorithm
from trtq.numeric import INT8_MAX

DEFAULT_PERCENTILE = 99.99


def histogram_of(batches: Iterable[npt.ArrayLike]) -> TrtHistogram:
    histogram = TrtHistogram()
    for batch in batches:
        histogram.update(batch)
    return histogram


def minmax_from(histogram: TrtHistogram) -> np.float32:
    """MinMaxCalibrator: the whole observed range, max |x| over all batches."""
    return np.float32(histogram.max_abs)


def entropy_from(histogram: TrtHistogram) -> np.float32:
    return entropy_threshold(histogram).amax


def percentile_from(histogram: TrtHistogram, percentile: float = DEFAULT_PERCENTILE) -> np.float32:
    """Upper edge of the bin where the |x| distribution's CDF first reaches ``percentile``."""
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    total = histogram.total
    if histogram.range == 0.0 or total == 0:
        return np.float32(0.0)
    cdf = np.cumsum(histogram.counts)
    index = int(np.searchsorted(cdf, percentile / 100.0 * total, side="left"))
    index = min(index, histogram.num_bins - 1)
    return histogram.threshold_at(index + 1)


def mse_from(histogram: TrtHistogram) -> np.float32:
    """The candidate upper edge (bins 128..2048) whose symmetric INT8 quantization of the
    histogram's bin centres has the least mean squared error."""
    return mse_amaxes([histogram])[0]


def mse_amaxes(histograms: Sequence[TrtHistogram]) -> list[np.float32]:
    """``mse_from`` for many histograms at once: one matrix product reads the error table once
    instead of once per tensor (the table is 30 MB at 2048 bins)."""
    amaxes = [np.float32(0.0)] * len(histograms)
    by_bins: dict[int, list[int]] = {}
    for index, histogram in enumerate(histograms):
        if histogram.range != 0.0 and histogram.total != 0:
            by_bins.setdefault(histogram.num_bins, []).append(index)
    for num_bins, indices in by_bins.items():
        counts = np.stack([histograms[i].counts for i in indices]).astype(np.float64)
        best = np.argmin(counts @ _mse_error_table(num_bins).T, axis=1)
        for i, bins_kept in zip(indices, best, strict=True):
            width = histograms[i].range / num_bins
            with np.errstate(over="ignore"):  # beyond float32's largest value: inf, refused where used
                amaxes[i] = np.float32((FIRST_CANDIDATE + int(bins_kept)) * width)
    return amaxes


@lru_cache(maxsize=2)
def _mse_error_table(num_bins: int) -> npt.NDArray[np.float64]:
    """Squared quantization error, in bin widths squared, of bin j's centre under candidate amax = i bins.

    In units of the bin width the centres are j + 0.5 and the step is i/127 whatever the range, so
    the table is the same for every histogram and each tensor's search is one matrix-vector product.
    """
    centres = np.arange(num_bins, dtype=np.float64) + 0.5
    bins_kept = np.arange(FIRST_CANDIDATE, num_bins + 1, dtype=np.float64)[:, None]
    step = bins_kept / INT8_MAX
    # One 30 MB array worked in place: fresh temporaries of that size cost more than the arithmetic.
    table = np.divide(centres[None, :], step)
    np.rint(table, out=table)
    np.minimum(table, INT8_MAX, out=table)
    np.multiply(table, step, out=table)
    np.subtract(centres[None, :], table, out=table)
    return np.square(table, out=table)


def amax_from(
    histogram: TrtHistogram, algorithm: Algorithm, percentile: float = DEFAULT_PERCENTILE
) -> np.float32:
    if algorithm == "percentile":
        return percentile_from(histogram, percentile)
    finders: dict[str, Callable[[TrtHistogram], np.float32]] = {
        "entropy": entropy_from,
        "minmax": minmax_from,
        "mse": mse_from,
    }
    return finders[algorithm](histogram)


# Public API: one iterable of arrays (one per calibration batch, in order) -> float32 threshold.


def amax_entropy(batches: Iterable[npt.ArrayLike]) -> np.float32:
    """Threshold TensorRT's IInt8EntropyCalibrator2 would pick for a tensor with these batches."""
    return entropy_from(histogram_of(batches))


def amax_minmax(batches: Iterable[npt.ArrayLike]) -> np.float32:
    """Max |x| over all batches (IInt8MinMaxCalibrator)."""
    return minmax_from(histogram_of(batches))


def amax_percentile(batches: Iterable[npt.ArrayLike], percentile: float = DEFAULT_PERCENTILE) -> np.float32:
    return percentile_from(histogram_of(batches), percentile)


def amax_mse(batches: Iterable[npt.ArrayLike]) -> np.float32:
    return mse_from(histogram_of(batches))
