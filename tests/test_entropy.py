"""The NumPy EntropyCalibrator2 search: known thresholds, the degenerate-candidate guard, and agreement
with a plain per-candidate implementation on constructed and real histograms."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_kl import reference_kl, reference_pick

from trtq.calib import amax_entropy
from trtq.calib.entropy import entropy_threshold, kl_divergences
from trtq.calib.histogram import NUM_BINS, TrtHistogram


def histogram_from_counts(counts: np.ndarray, value_range: float) -> TrtHistogram:
    h = TrtHistogram(num_bins=counts.size)
    h.counts = counts.astype(np.int64)
    h.range = value_range
    h.max_abs = value_range
    return h


def expected_amax(bins_kept: int, value_range: float, num_bins: int = NUM_BINS) -> np.float32:
    return np.float32(np.float32(bins_kept + 0.5) * (np.float32(value_range) / np.float32(num_bins)))


def test_uniform_mass_below_bin_200_clips_at_its_edge() -> None:
    # Every kept level is uniform, so Q == P and KL == 0 for every i >= 200; below 200 the folded
    # outliers make KL > 0. The smallest zero-KL candidate, i = 200, wins: amax = 200.5 bin widths.
    counts = np.zeros(NUM_BINS)
    counts[:200] = 1000
    result = entropy_threshold(histogram_from_counts(counts, 8.0))
    assert result.bins_kept == 200
    assert result.amax == expected_amax(200, 8.0)
    assert float(result.amax) == pytest.approx(200.5 * 8.0 / 2048)
    assert np.all(result.divergence[result.candidates < 200] > 0)
    assert np.allclose(result.divergence[result.candidates >= 200], 0.0, atol=1e-12)


def test_full_range_is_a_candidate() -> None:
    # Half the mass in the first two bins, half in the last: every i < 2048 leaves an empty last bin
    # that must hold the outliers (KL infinite), so nothing is clipped and amax = 2048.5 bin widths.
    counts = np.zeros(NUM_BINS)
    counts[:2] = counts[-1] = 500
    result = entropy_threshold(histogram_from_counts(counts, 2.0))
    assert np.isinf(result.divergence[:-1]).all()
    assert result.bins_kept == NUM_BINS
    assert result.amax == expected_amax(NUM_BINS, 2.0)


def test_degenerate_single_bin_candidate_never_wins() -> None:
    # All values lie in bins 1000..2047 (an offset activation). At i = 1001, P is a single bin and
    # KL(P||Q) is exactly 0; TensorRT skips such candidates and takes the best of the others.
    rng = np.random.default_rng(3)
    counts = np.zeros(NUM_BINS)
    counts[1000:] = rng.integers(1, 50, size=NUM_BINS - 1000)
    h = histogram_from_counts(counts, 1.0)
    result = entropy_threshold(h)
    at_1001 = int(np.flatnonzero(result.candidates == 1001)[0])
    assert result.divergence[at_1001] == 0.0
    assert result.degenerate[at_1001]
    assert result.bins_kept != 1001
    assert result.bins_kept == reference_pick(counts)


def test_all_zero_tensor_has_zero_threshold() -> None:
    assert amax_entropy([np.zeros((2, 8), dtype=np.float32)] * 3) == 0.0


@settings(max_examples=40)
@given(
    seed=st.integers(0, 2**32 - 1),
    shape=st.sampled_from(["relu", "laplace", "sparse", "bimodal"]),
    num_bins=st.sampled_from([160, 256, 300]),
)
def test_vectorised_search_matches_plain_recipe(seed: int, shape: str, num_bins: int) -> None:
    rng = np.random.default_rng(seed)
    if shape == "relu":
        values = np.maximum(rng.standard_normal(5000), 0)
    elif shape == "laplace":
        values = rng.laplace(size=5000)
    elif shape == "sparse":
        values = rng.choice([0.0, 0.1, 0.5, 3.0], size=500, p=[0.7, 0.2, 0.09, 0.01])
    else:
        values = np.concatenate([rng.normal(0.2, 0.05, 3000), rng.normal(2.0, 0.3, 300)])
    h = TrtHistogram(num_bins=num_bins)
    h.update(values)
    candidates = np.arange(128, num_bins + 1)
    kl, _ = kl_divergences(h.counts, candidates)
    reference = np.array([reference_kl(h.counts, i) for i in candidates])
    finite = np.isfinite(reference)
    assert np.array_equal(np.isfinite(kl), finite)
    assert np.allclose(kl[finite], reference[finite], rtol=1e-9, atol=1e-12)
    assert entropy_threshold(h).bins_kept == reference_pick(zero_bin_as_bin_one(h.counts))


def zero_bin_as_bin_one(counts: np.ndarray) -> np.ndarray:
    """NVIDIA's rule (pytorch-quantization / ModelOpt ``_compute_amax_entropy``): bins[0] = bins[1]."""
    searched = np.array(counts, dtype=np.int64)
    searched[0] = searched[1]
    return searched


def test_real_activation_full_2048_bins(classifier_path, photos) -> None:
    """First conv activation of the PP-OCR classifier on real photos, checked against the plain recipe."""
    import cv2
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(classifier_path))
    first_conv = next(node for node in model.graph.node if node.op_type == "Conv").output[0]
    model.graph.output.append(onnx.helper.make_tensor_value_info(first_conv, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    batches = []
    for path in photos[:4]:
        image = cv2.resize(cv2.imread(str(path)), (192, 48)).astype(np.float32) / 127.5 - 1.0
        batches.append(session.run([first_conv], {"x": image.transpose(2, 0, 1)[None]})[0])
    h = TrtHistogram()
    for batch in batches:
        h.update(batch)
    result = entropy_threshold(h)
    assert result.bins_kept == reference_pick(zero_bin_as_bin_one(h.counts))
    assert amax_entropy(batches) == result.amax
    assert 0 < result.amax <= np.float32(h.range * (1 + 0.5 / NUM_BINS))
    assert result.amax < h.max_abs  # real conv outputs have outliers worth clipping


@pytest.mark.parametrize("num_bins", [128, 300, 2048, 4096])
def test_compiled_level_sums_add_as_numpy_sums_a_row(num_bins: int) -> None:
    # The compiled loop must give every candidate's level sum bit for bit as NumPy's row sum of the
    # same 128 terms (NumPy adds a row of 128 in eight running sums combined pairwise), so that KL
    # values, and ties between them, do not depend on which of the two computed them.
    from trtq.calib.binning import level_sums

    rng = np.random.default_rng(num_bins)
    candidates = np.arange(128, num_bins + 1, dtype=np.int64)
    k = np.arange(129, dtype=np.int64)[None, :]
    edges = -(-k * candidates[:, None] // 128)  # level k covers bins [ceil(k i / 128), ceil((k + 1) i / 128))
    widths = int((edges[:, 1:] - edges[:, :-1]).max()) + 1
    run_term = rng.exponential(1e6, size=(num_bins + 1) * widths) * rng.random((num_bins + 1) * widths)
    level_runs = edges[:, :-1] * widths + (edges[:, 1:] - edges[:, :-1])
    assert np.array_equal(level_sums(run_term, widths, candidates), run_term[level_runs].sum(axis=1))
