"""The chunked, threaded binning against a plain restatement of TensorRT's histogram rules, on real
activations of the PP-OCR text classifier (range doublings and values exactly at the range included)."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import yaml
from conftest import WriteConfig, classifier_config, listed_photos

from trtq.calib import histogram
from trtq.calib.collect import ActivationCollector
from trtq.calib.histogram import NUM_BINS, NonFiniteError, TrtHistogram, update_batch
from trtq.calib.run import collect_histograms, usable_cores
from trtq.config import load_config
from trtq.data.from_config import batch_source, calibration_entries

Batches = list[dict[str, npt.NDArray[np.float32]]]


def plain_histogram(
    batches: list[npt.NDArray[np.float32]],
    num_bins: int = NUM_BINS,
    start: tuple[npt.NDArray[np.int64], float] | None = None,
) -> tuple[np.ndarray, float, int]:
    """Counts, range and doublings by the rules written out: floor(|x| * bins / range) in float32,
    |x| == range in the last bin, the range doubled by merging neighbouring bins pairwise; from
    ``start`` (counts and range) if given."""
    counts, value_range = (np.zeros(num_bins, dtype=np.int64), 0.0) if start is None else start
    doublings = 0
    for batch in batches:
        magnitudes = np.abs(batch.astype(np.float32)).ravel()
        batch_max = float(magnitudes.max())
        if batch_max == 0.0:
            counts[0] += magnitudes.size
            continue
        if value_range == 0.0:
            value_range = batch_max
        while batch_max > value_range:
            counts = np.concatenate([counts[0::2] + counts[1::2], np.zeros(num_bins // 2, dtype=np.int64)])
            value_range *= 2.0
            doublings += 1
        bins = np.floor(magnitudes * np.float32(num_bins / value_range))
        found, found_counts = np.unique(np.minimum(bins, num_bins - 1).astype(np.int64), return_counts=True)
        counts[found] += found_counts
    return counts, value_range, doublings


@pytest.fixture(scope="module")
def real_batches(tmp_path_factory: pytest.TempPathFactory) -> Batches:
    """Four real batches of every activation, then the first one scaled by 4 (an exact float32
    product, so its max lands exactly on the doubled range: two doublings, values at the range)."""
    tmp = tmp_path_factory.mktemp("binning")
    (tmp / "images.txt").write_text("\n".join(listed_photos(8)) + "\n")
    (tmp / "model.yaml").write_text(yaml.safe_dump(classifier_config("images.txt", "model.cache")))
    config = load_config(tmp / "model.yaml")
    collector = ActivationCollector(config.model_path, "x", (2, 3, 48, 192))
    batches = [dict(collector.run(batch.data)) for batch in batch_source(config, calibration_entries(config))]
    batches.append({name: values * np.float32(4.0) for name, values in batches[0].items()})
    return batches


def test_real_activations_bin_as_the_plain_rules_say(
    real_batches: Batches, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small chunks and pieces, so tensors are cut across chunks, pieces and threads, and a thread's
    # adjacent pieces of one tensor are counted in runs of at most two pieces.
    monkeypatch.setattr(histogram, "CHUNK", 1000)
    monkeypatch.setattr(histogram, "PIECE", 3000)
    monkeypatch.setattr(histogram, "MAX_RUN", 6000)
    names = list(real_batches[0])
    one_by_one = {name: TrtHistogram() for name in names}
    # Every third histogram with half the bins: one batch may mix sizes (each size counted on its own).
    threaded = [TrtHistogram(num_bins=NUM_BINS // 2 if i % 3 == 0 else NUM_BINS) for i in range(len(names))]
    with ThreadPoolExecutor(max_workers=3) as pool:
        for batch in real_batches:
            for name in names:
                one_by_one[name].update(batch[name])
            update_batch(threaded, names, [batch[name] for name in names], pool, parts=3)
    doubled = at_range = 0
    for name, split in zip(names, threaded, strict=True):
        values = [batch[name] for batch in real_batches]
        counts, value_range, doublings = plain_histogram(values)
        assert np.array_equal(one_by_one[name].counts, counts), name
        assert np.array_equal(split.counts, plain_histogram(values, split.num_bins)[0]), name
        for h in (one_by_one[name], split):
            assert (h.range, h.doublings) == (value_range, doublings), name
            assert h.max_abs == max(float(np.abs(batch[name]).max()) for batch in real_batches)
        doubled += doublings > 0
        at_range += any(bool((np.abs(batch[name]) == value_range).any()) for batch in real_batches)
    # The scaled batch forces doublings on every non-zero tensor and puts values exactly at the range.
    assert doubled >= len(names) - 1 and at_range >= len(names) - 1


def test_pipeline_histograms_match_the_plain_rules_at_the_configured_batch(write_config: WriteConfig) -> None:
    config = load_config(write_config(n_images=8))
    entries = calibration_entries(config)
    run = collect_histograms(config, entries)
    collector = ActivationCollector(config.model_path, "x", (2, 3, 48, 192))
    batches = [dict(collector.run(batch.data)) for batch in batch_source(config, entries)]
    assert len(batches) == 4
    for name, h in run.histograms.items():
        counts, value_range, doublings = plain_histogram([batch[name] for batch in batches])
        assert np.array_equal(h.counts, counts) and (h.range, h.doublings) == (value_range, doublings), name
    assert set(run.timings) == {"decode", "model", "statistics"}


def test_a_nan_names_its_tensor() -> None:
    good = np.ones(10, dtype=np.float32)
    bad = np.array([1.0, np.nan], dtype=np.float32)
    with ThreadPoolExecutor(max_workers=2) as pool, pytest.raises(NonFiniteError) as error:
        update_batch([TrtHistogram(), TrtHistogram()], ["good", "bad"], [good, bad], pool, parts=2)
    assert error.value.tensor == "bad"


def test_a_later_batch_of_zeros_or_a_late_non_finite_value_is_handled(real_batches: Batches) -> None:
    # After the first batch the range is known and values are counted in the same pass as their
    # max: an all-zero batch must be counted once, and a NaN or inf must still name its tensor.
    names = list(real_batches[0])
    first = real_batches[0]
    zeros = {name: np.zeros_like(values) for name, values in first.items()}
    histograms = [TrtHistogram() for _ in names]
    with ThreadPoolExecutor(max_workers=2) as pool:
        for batch in (first, zeros, real_batches[1]):
            update_batch(histograms, names, [batch[name] for name in names], pool, parts=2)
        for name, h in zip(names, histograms, strict=True):
            counts, value_range, _ = plain_histogram([first[name], zeros[name], real_batches[1][name]])
            assert np.array_equal(h.counts, counts) and h.range == value_range, name
        target = names[len(names) // 2]
        for bad_value in (np.nan, np.inf, -np.inf):
            bad = {name: values.copy() for name, values in real_batches[2].items()}
            bad[target].reshape(-1)[bad[target].size // 2] = bad_value
            with pytest.raises(NonFiniteError) as error:
                update_batch(histograms, names, [bad[name] for name in names], pool, parts=2)
            assert error.value.tensor == target


def test_counting_refuses_a_scale_that_would_index_past_the_bins() -> None:
    # The compiled kernel does not check indices: the caller's scale and limit must keep them in range.
    from trtq.calib.binning import scan_counts

    values = np.ones(8, dtype=np.float32)
    with pytest.raises(ValueError, match="outside"):
        scan_counts(values, np.float32(NUM_BINS / 0.5), 1.0, NUM_BINS, 4096)
    found, counts = scan_counts(values, np.float32(NUM_BINS), 1.0, NUM_BINS, 4096)
    assert found == 1.0 and counts is not None and counts[NUM_BINS] == 8


def test_one_batch_checks_every_tensors_binning_and_names_the_one_outside() -> None:
    # Scales are checked for all tensors of a batch at once: the one whose limit lands past the bins
    # (here 1.0 * 4096 = bin 4096 of 2048) is named, whichever position it has.
    from trtq.calib.binning import Binning

    scales = np.array([NUM_BINS, NUM_BINS, 2 * NUM_BINS], dtype=np.float32)
    with pytest.raises(ValueError, match=r"scale 4096\.0 with limit 1\.0 falls outside 2048 bins"):
        Binning.checked(scales, np.ones(3), NUM_BINS)
    checked = Binning.checked(scales[:2], np.ones(2), NUM_BINS)
    assert checked.limit_bits.tolist() == [0x3F800000] * 2  # 1.0f's bits


def plainly_within(scale: np.float32, limit: float, num_bins: int) -> bool:
    """The binning precondition written out with Python scalars: |x| == limit lands in a bin."""
    limit32 = np.float32(limit)
    if not (np.isfinite(scale) and scale > 0 and np.isfinite(limit32) and limit32 >= 0):
        return False
    with np.errstate(over="ignore"):
        top = limit32 * scale  # float32 product, as the kernel computes it
    return bool(np.isfinite(top)) and int(top) <= num_bins


def test_the_batch_check_accepts_exactly_what_the_plain_precondition_does() -> None:
    # Scales a few float32 steps either side of num_bins / limit, for bin counts up to past 2**24,
    # where num_bins itself is no float32 (the check must not round it), and odd scales and limits.
    from trtq.calib.binning import Binning

    odd_scales = [np.float32(value) for value in (-1.0, 0.0, np.inf, np.nan, 4.5e22)]
    cases = []
    for num_bins in (2048, 1 << 24, (1 << 24) + 3):
        for limit in (1.0, 1.0009765625, 0.1, 3.0e38, 1e-30, 0.0, -1.0, np.inf, np.nan):
            exact = np.float32(num_bins / limit) if limit != 0.0 and np.isfinite(limit) else np.float32(1)
            steps = [np.nextafter(exact, np.float32(np.inf)), np.nextafter(exact, np.float32(0)), exact]
            cases += [(np.float32(step), float(limit), num_bins) for step in steps + odd_scales]
    assert any(plainly_within(*case) for case in cases) and not all(plainly_within(*case) for case in cases)
    for scale, limit, num_bins in cases:
        try:
            Binning.checked(np.array([scale]), np.array([limit]), num_bins)
            accepted = True
        except ValueError:
            accepted = False
        assert accepted == plainly_within(scale, limit, num_bins), (scale, limit, num_bins)


def test_a_range_set_by_hand_that_is_no_float32_still_grows_when_exceeded() -> None:
    # 2.048 is no float32: float32(2.048) is above it, so a value equal to float32(2.048) lies beyond
    # the range. The range doubles and the batch is counted at the new range, as the rules say.
    start = np.zeros(NUM_BINS, dtype=np.int64)
    start[100] = 5
    h = TrtHistogram(counts=start.copy(), range=2.048)
    values = np.array([2.048, 1.024], dtype=np.float32)
    h.update(values)
    counts, value_range, doublings = plain_histogram([values], start=(start, 2.048))
    assert np.array_equal(h.counts, counts)
    assert (h.range, h.doublings) == (value_range, doublings) == (4.096, 1)
    assert h.counts[[50, 512, 1024]].tolist() == [5, 1, 1]  # by hand: 100 / 2, then x * 500 in float32


def test_a_negative_range_set_by_hand_is_refused() -> None:
    with pytest.raises(ValueError, match="outside 2048 bins"):
        TrtHistogram(range=-1.0).update(np.ones(2, dtype=np.float32))


def words_printed_by(code: str) -> list[str]:
    """Run ``code`` in a fresh interpreter (Numba, SciPy and the kernels not yet loaded): its words."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@pytest.mark.parametrize(
    "break_cache",
    [
        # nowhere to write the cache: Numba refuses cache=True when the kernels are defined
        "import numba.core.caching as c; c.CacheImpl._locator_classes = []",
        # a corrupt cache index: Numba raises when the first call loads it
        "import numba.core.caching as c, pickle\n"
        "def corrupt(self): raise pickle.UnpicklingError('corrupt index')\n"
        "c.IndexDataCacheFile._load_index = corrupt",
    ],
)
def test_binning_works_when_numbas_cache_does_not(break_cache: str) -> None:
    # The cache only saves compile time: the counts must come out, and right, without it.
    code = (
        f"{break_cache}\n"
        "import numpy as np\n"
        "from trtq.calib.binning import scan_counts\n"
        "values = np.array([0.5, -1.0, 0.25], np.float32)\n"
        "top, counts = scan_counts(values, np.float32(2048), 1.0, 2048, 4096)\n"
        "print(top, counts[512], counts[1024], counts[2048], counts.sum())\n"
    )
    assert words_printed_by(code) == ["1.0", "1", "1", "1", "3"]  # 0.25*2048, 0.5*2048, |-1|*2048


def test_loading_the_kernels_leaves_numbas_import_state_as_numba_made_it() -> None:
    # No module is hidden or replaced while the kernels load: Numba's BLAS note is its own bool,
    # and compiled np.dot and scipy.linalg work afterwards.
    code = (
        "from trtq.calib.binning import load_kernels\n"
        "load_kernels()\n"
        "import numba, numpy as np, numba.np.arraymath, scipy.linalg\n"
        "print(type(numba.np.arraymath._HAVE_BLAS).__name__)\n"
        "print(numba.njit(lambda a, b: np.dot(a, b))(np.arange(3.0), np.arange(3.0)))\n"
        "print(scipy.linalg.norm([3.0, 4.0]))\n"
    )
    assert words_printed_by(code) == ["bool", "5.0", "5.0"]


def test_binning_threads_respect_a_container_cpu_quota(tmp_path: Path) -> None:
    cores = len(os.sched_getaffinity(0))
    cpu_max = tmp_path / "cpu.max"
    for text, expected in [("max 100000\n", cores), ("150000 100000\n", min(cores, 2)), ("50000 100000", 1)]:
        cpu_max.write_text(text)
        assert usable_cores(cpu_max) == expected, text
    assert usable_cores(tmp_path / "absent") == cores
