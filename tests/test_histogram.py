"""TensorRT's histogram rules: 2048 bins of |x|, range from the first batch, doubled when exceeded."""

import numpy as np
import pytest

from trtq.calib.histogram import NUM_BINS, TrtHistogram
from trtq.errors import TrtqError


def test_first_batch_sets_range_and_bins_magnitudes() -> None:
    h = TrtHistogram()
    h.update(np.array([-4.0, 1.0, 0.0, 2.0, 4.0], dtype=np.float32))
    assert h.range == 4.0
    assert h.max_abs == 4.0
    # width 4/2048: 0 -> bin 0, 1 -> 512, 2 -> 1024, |-4| and 4 are the top edge -> last bin
    assert h.counts[0] == 1 and h.counts[512] == 1 and h.counts[1024] == 1
    assert h.counts[NUM_BINS - 1] == 2
    assert h.total == 5


def test_larger_batch_doubles_range_and_merges_bin_pairs() -> None:
    h = TrtHistogram()
    h.update(np.array([1.0, 0.25, 0.0009], dtype=np.float32))  # width 1/2048; 0.25 -> bin 512
    before = h.counts.copy()
    h.update(np.array([3.0], dtype=np.float32))  # needs range 4: two doublings
    assert h.range == 4.0
    assert h.doublings == 2
    merged_twice = before.reshape(-1, 4).sum(axis=1)
    assert np.array_equal(h.counts[:512], merged_twice)
    assert h.counts[1536] == 1  # 3.0 with width 4/2048
    assert h.counts[512:].sum() == 1
    assert h.max_abs == 3.0


def test_result_depends_on_batch_order_like_tensorrt() -> None:
    rng = np.random.default_rng(7)
    small = np.abs(rng.standard_normal(10_000)).astype(np.float32)
    large = small * 3
    forward, backward = TrtHistogram(), TrtHistogram()
    forward.update(small)
    forward.update(large)
    backward.update(large)
    backward.update(small)
    assert forward.range == pytest.approx(4 * small.max())
    assert backward.range == pytest.approx(large.max())
    assert not np.array_equal(forward.counts, backward.counts)
    assert forward.total == backward.total == 20_000
    assert forward.max_abs == backward.max_abs


def test_all_zero_batches_keep_range_unset_until_real_values() -> None:
    h = TrtHistogram()
    h.update(np.zeros(100, dtype=np.float32))
    assert h.range == 0.0 and h.counts[0] == 100
    h.update(np.array([0.5], dtype=np.float32))
    assert h.range == 0.5 and h.counts[0] == 100 and h.counts[NUM_BINS - 1] == 1


def test_non_finite_activation_is_an_error() -> None:
    with pytest.raises(FloatingPointError):
        TrtHistogram().update(np.array([1.0, np.nan], dtype=np.float32))


def test_bin_counts_agree_with_numpy_histogram_on_real_photo(photos: list) -> None:
    import cv2

    image = cv2.imread(str(photos[0])).astype(np.float32) / 255.0 - 0.5
    h = TrtHistogram()
    h.update(image)
    magnitudes = np.abs(image).ravel()
    expected, _ = np.histogram(magnitudes, bins=NUM_BINS, range=(0.0, float(magnitudes.max())))
    assert h.total == image.size == expected.sum()
    # NumPy rounds bin edges in float64, trtq scales in float32 as TensorRT does: values sitting on an
    # edge may land one bin apart, nothing else.
    moved = np.abs(np.cumsum(h.counts) - np.cumsum(expected)).max()
    assert moved <= image.size * 1e-3


def test_a_range_too_small_for_a_float32_bin_width_is_a_clear_error() -> None:
    # 2048 / 1e-36 overflows float32: binning would cast inf to a garbage index.
    with pytest.raises(TrtqError, match="too small for a float32 calibration histogram"):
        TrtHistogram().update(np.array([1e-36, 0.0], dtype=np.float32))


def test_mismatched_or_complex_batches_and_odd_bin_counts_are_clear_errors() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from trtq.calib.histogram import update_batch

    values = np.ones(4, dtype=np.float32)
    with ThreadPoolExecutor(max_workers=2) as pool:
        with pytest.raises(ValueError, match="2 histograms, 1 names and 2 activations: one each"):
            update_batch([TrtHistogram(), TrtHistogram()], ["a"], [values, values], pool, 2)
        with pytest.raises(TypeError, match="tensor 'b' is complex"):
            update_batch([TrtHistogram(), TrtHistogram()], ["a", "b"], [values, values * 1j], pool, 2)
    odd = TrtHistogram(num_bins=5)
    odd.update(values)
    with pytest.raises(ValueError, match="5 bins cannot merge in pairs"):
        odd.update(values * 2)
