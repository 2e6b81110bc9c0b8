"""trtq's entropy pick against NVIDIA ModelOpt's ``_compute_amax_entropy`` on real histograms.

tests/data/entropy_oracle.npz holds TensorRT-rule histograms (2048 bins of |x|) of real activations
of the PP-OCRv4 detector, the PP-OCR text-direction classifier and EfficientNet-Lite0 (ReLU6), each
with the candidate i that ModelOpt picked on it (128 signed levels, start bin 128). Both come from
``python benchmarks/entropy_oracle.py --fixtures tests/data/entropy_oracle.npz``; the expected values
are ModelOpt's, never trtq's. Where the two differ by design, the difference is checked with the
plain per-candidate recipe in reference_kl.py, not with trtq's own search.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from reference_kl import reference_kl, reference_pick

from trtq.calib.entropy import FIRST_CANDIDATE, entropy_threshold, kl_divergences
from trtq.calib.histogram import TrtHistogram

FIXTURES = Path(__file__).parent / "data" / "entropy_oracle.npz"
RELU_FAMILY = ("Relu", "Clip", "HardSwish", "HardSigmoid")


def load_fixtures() -> list[dict[str, object]]:
    data = np.load(FIXTURES)
    return [
        {
            "counts": data["counts"][i],
            "modelopt": int(data["modelopt_pick"][i]),
            "id": f"{data['model'][i]}:{data['tensor'][i]}",
            "producer": str(data["producer"][i]),
        }
        for i in range(len(data["counts"]))
    ]


CASES = load_fixtures()


def histogram(counts: np.ndarray) -> TrtHistogram:
    h = TrtHistogram()
    h.counts = counts.astype(np.int64).copy()
    h.range = h.max_abs = 1.0
    return h


def nvidia_zero_bin(counts: np.ndarray) -> np.ndarray:
    searched = counts.astype(np.int64).copy()
    searched[0] = searched[1]
    return searched


def test_fixtures_cover_real_relu_family_tensors_of_three_networks() -> None:
    assert len(CASES) >= 30
    assert {str(c["id"]).split(":")[0] for c in CASES} == {"det", "cls", "lite0"}
    zero_heavy = [
        c for c in CASES if c["producer"] in RELU_FAMILY and c["counts"][0] > 0.3 * c["counts"].sum()
    ]
    assert len(zero_heavy) >= 10


@pytest.mark.parametrize("case", CASES, ids=[str(c["id"]) for c in CASES])
def test_pick_matches_modelopt(case: dict[str, object]) -> None:
    counts = case["counts"]
    assert isinstance(counts, np.ndarray)
    mine, theirs = entropy_threshold(histogram(counts)).bins_kept, int(case["modelopt"])  # type: ignore[call-overload]
    if mine == theirs:
        return
    searched = nvidia_zero_bin(counts)
    if not searched[:theirs].any():
        # ModelOpt's KL is NaN where every kept bin is empty, and its argmin returns a NaN: then trtq's
        # pick must be the plain recipe's (which skips candidates that keep no mass, as TensorRT does).
        assert searched[:mine].any()
        assert mine == reference_pick(searched)
        return
    # Otherwise only an exact tie may separate them (ModelOpt keeps the largest i, trtq the smallest).
    kl_mine, kl_theirs = reference_kl(searched, mine), reference_kl(searched, theirs)
    assert math.isclose(kl_mine, kl_theirs, rel_tol=1e-9), (mine, kl_mine, theirs, kl_theirs)
    assert mine < theirs


def test_zero_dominated_relu_outputs_are_no_longer_clipped_hard() -> None:
    """Without bins[0] = bins[1] the zero spike drags the search down, to i = 128 (range / 16) on some
    tensors; with it trtq and ModelOpt keep far more of the range. The raw-histogram search uses
    trtq's vectorised KL, which test_entropy.py checks against the plain recipe."""
    zero_heavy = [
        c for c in CASES if c["producer"] in RELU_FAMILY and c["counts"][0] > 0.5 * c["counts"].sum()
    ]
    assert zero_heavy
    halved = 0
    for case in zero_heavy:
        counts = case["counts"]
        assert isinstance(counts, np.ndarray)
        with_rule = entropy_threshold(histogram(counts)).bins_kept
        assert with_rule > FIRST_CANDIDATE, case["id"]
        assert case["modelopt"] > FIRST_CANDIDATE  # type: ignore[operator]
        candidates = np.arange(FIRST_CANDIDATE, counts.size + 1)
        raw, degenerate = kl_divergences(counts.astype(np.int64), candidates)
        without_rule = int(candidates[np.argmin(np.where(degenerate, np.inf, raw))])
        assert without_rule < with_rule, (case["id"], without_rule, with_rule)
        halved += without_rule < with_rule / 2
    assert halved > len(zero_heavy) / 2
