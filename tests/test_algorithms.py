"""minmax, percentile and mse thresholds, and the public amax_* API."""

from __future__ import annotations

import numpy as np
import pytest

from trtq.calib import amax_entropy, amax_minmax, amax_mse, amax_percentile, scale_from_amax
from trtq.calib.algorithms import mse_from, percentile_from
from trtq.calib.histogram import NUM_BINS, TrtHistogram


def test_minmax_is_exact_max_abs_over_batches() -> None:
    batches = [np.array([[0.5, -2.25]], dtype=np.float32), np.array([1.0, 3.5, -3.75], dtype=np.float32)]
    assert amax_minmax(batches) == np.float32(3.75)
    assert amax_minmax(iter(batches)) == np.float32(3.75)  # any iterable, consumed once


def test_percentile_on_constructed_histogram() -> None:
    h = TrtHistogram()
    h.counts[10] = 9990
    h.counts[NUM_BINS - 1] = 10
    h.range = 2.048  # bin width 0.001
    assert percentile_from(h, 99.5) == pytest.approx(0.011, rel=1e-6)  # upper edge of bin 10
    assert percentile_from(h, 99.95) == pytest.approx(2.048, rel=1e-6)
    assert percentile_from(h, 100.0) == pytest.approx(2.048, rel=1e-6)
    with pytest.raises(ValueError):
        percentile_from(h, 0.0)


def test_percentile_tracks_the_sample_quantile() -> None:
    rng = np.random.default_rng(0)
    values = rng.standard_normal(400_000).astype(np.float32)
    amax = amax_percentile([values[:200_000], values[200_000:]], percentile=99.0)
    assert float(amax) == pytest.approx(np.quantile(np.abs(values), 0.99), rel=2e-3)


def _quantization_mse(values: np.ndarray, amax: float) -> float:
    step = amax / 127
    quantised = np.clip(np.rint(values / step), -127, 127) * step
    return float(np.mean((values - quantised) ** 2))


def test_mse_threshold_is_near_the_best_on_raw_samples() -> None:
    rng = np.random.default_rng(1)
    values = rng.laplace(scale=1.0, size=300_000).astype(np.float32)
    chosen = float(amax_mse([values]))
    grid = np.linspace(0.1 * np.abs(values).max(), np.abs(values).max(), 400)
    best = min(grid, key=lambda amax: _quantization_mse(values, amax))
    assert chosen < np.abs(values).max() * 0.9  # a heavy tail is clipped
    assert _quantization_mse(values, chosen) <= 1.02 * _quantization_mse(values, best)


def test_mse_keeps_the_range_of_uniform_data() -> None:
    values = np.linspace(-1, 1, 100_001, dtype=np.float32)
    assert float(amax_mse([values])) >= 0.97


def test_entropy_clips_a_heavy_tail_that_minmax_keeps() -> None:
    rng = np.random.default_rng(2)
    batches = [np.maximum(rng.standard_normal(50_000), 0).astype(np.float32) for _ in range(3)]
    batches[1][0] = 40.0  # one outlier
    assert amax_minmax(batches) == np.float32(40.0)
    assert float(amax_entropy(batches)) < 8.0


def test_scale_is_amax_over_127_in_float32() -> None:
    assert scale_from_amax(1.0) == np.float32(1.0) / np.float32(127.0)
    assert scale_from_amax(127.0) == np.float32(1.0)
    assert scale_from_amax(0.0) == 0.0


def test_mse_search_matches_a_per_candidate_computation_on_the_histogram() -> None:
    rng = np.random.default_rng(4)
    h = TrtHistogram()
    h.update(rng.laplace(size=100_000).astype(np.float32))
    h.update(rng.laplace(scale=3.0, size=1000).astype(np.float32))  # one doubling
    width = h.range / NUM_BINS
    centres = (np.arange(NUM_BINS) + 0.5) * width

    def error(amax: float) -> float:
        step = amax / 127
        quantised = np.minimum(np.rint(centres / step), 127) * step
        return float(np.sum(h.counts * (centres - quantised) ** 2))

    candidates = [i * width for i in range(128, NUM_BINS + 1)]
    best = min(candidates, key=error)
    assert float(mse_from(h)) == pytest.approx(best, rel=1e-6)


def test_thresholds_at_float32s_largest_value_overflow_to_inf_without_numpy_warnings() -> None:
    # Every value at float32's max: range = max, no doubling, all counts in the last bin. By hand:
    # percentile's edge is 2048 bins of max / 2048, exactly max; entropy finds every candidate
    # degenerate (one non-empty bin), keeps all 2048 bins and adds half a bin: inf in float32.
    # MSE's edges are computed in float64 and cast. None may warn: callers refuse an infinite scale.
    import warnings

    from trtq.calib.entropy import entropy_threshold

    largest = np.finfo(np.float32).max
    h = TrtHistogram()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h.update(np.full(1000, largest, dtype=np.float32))
        assert h.range == float(largest) and h.doublings == 0 and h.counts[-1] == 1000
        assert percentile_from(h, 99.99) == largest
        assert np.isinf(entropy_threshold(h).amax)
        assert not np.isnan(mse_from(h))
