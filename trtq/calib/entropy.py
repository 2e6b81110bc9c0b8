"""TensorRT's EntropyCalibrator2 threshold search (GTC 2017 S7310 recipe), vectorised over all candidates.

Before the search the zero bin takes the count of bin 1 (``bins[0] = bins[1]``), as NVIDIA's own
Python renderings of the search do (pytorch-quantization's and ModelOpt's ``_compute_amax_entropy``):
the exact zeros of ReLU, ReLU6 and Clip outputs, often most of the values, would otherwise dominate
the KL and drag the pick to the smallest candidate. Every total below is the modified histogram's.

For each candidate i in 128..2048, P is the first i bins with the mass of bins >= i folded into
P[i-1]; Q is the same i bins (without that outlier mass) merged into 128 levels (bin j -> level
floor(j*128/i)) and spread evenly over each level's non-empty bins. KL(P||Q) is infinite where
P > 0 and Q = 0. A candidate whose P has all its mass in one bin has KL 0 and is degenerate:
TensorRT never picks it. The threshold is (i + 0.5) * bin width, computed in float32.

Per candidate, KL reduces to sums over 128 levels and prefix sums over bins:
    N*KL = sum_j P_j log P_j - sum_k L_k log(L_k/n_k) - outliers*log Q_{i-1} - N log N + N log S
with L_k, n_k the count and non-empty bins of level k, S the count kept and N the total. That
turns a 1921 x 2048 computation into a 1921 x 128 one.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from trtq.calib.histogram import TrtHistogram
from trtq.numeric import QUANT_LEVELS

_Number = TypeVar("_Number", np.float64, np.int64)
FIRST_CANDIDATE = 128
_TIE_TOLERANCE = 1e-12


@dataclass(frozen=True)
class EntropyResult:
    amax: np.float32
    bins_kept: int
    """The winning candidate i (bins [0, i) kept); 0 for an all-zero tensor."""
    candidates: npt.NDArray[np.int64]
    divergence: npt.NDArray[np.float64]
    """KL(P||Q) per candidate; inf where Q misses mass of P. Degenerate candidates are kept here."""
    degenerate: npt.NDArray[np.bool_]


def with_zero_bin_rule(counts: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """A copy of ``counts`` whose zero bin holds bin 1's count: the histogram the search actually reads."""
    searched = counts.copy()
    searched[0] = searched[1]
    return searched


def entropy_threshold(histogram: TrtHistogram) -> EntropyResult:
    counts = with_zero_bin_rule(histogram.counts)
    num_bins = counts.size
    candidates = np.arange(FIRST_CANDIDATE, num_bins + 1, dtype=np.int64)
    if histogram.range == 0.0 or not counts.any():
        empty = np.full(candidates.size, np.inf)
        return EntropyResult(np.float32(0.0), 0, candidates, empty, np.ones(candidates.size, dtype=bool))
    divergence, degenerate = kl_divergences(counts, candidates)
    eligible = np.where(degenerate, np.inf, divergence)
    best = float(eligible.min())
    if np.isfinite(best):
        # Mathematically equal KLs can differ in the last bits; treat them as a tie, won by the smallest i.
        pick = int(np.flatnonzero(eligible <= best + _TIE_TOLERANCE * max(1.0, abs(best)))[0])
    else:
        pick = candidates.size - 1  # nothing eligible (e.g. a constant tensor): keep the whole range
    bins_kept = int(candidates[pick])
    amax = histogram.threshold_at(bins_kept + 0.5)
    return EntropyResult(amax, bins_kept, candidates, divergence, degenerate)


def kl_divergences(
    counts: npt.NDArray[np.int64], candidates: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """KL(P||Q) for every candidate i, and whether that candidate is degenerate (one non-empty P bin)."""
    h = counts.astype(np.float64)
    total = h.sum()
    prefix = np.concatenate([[0.0], np.cumsum(h)])
    nonempty = np.concatenate([[0], np.cumsum(counts > 0)])
    with np.errstate(divide="ignore", invalid="ignore"):
        h_log_h = np.where(h > 0, h * np.log(np.where(h > 0, h, 1.0)), 0.0)
    prefix_hlogh = np.concatenate([[0.0], np.cumsum(h_log_h)])

    i = candidates
    last = h[i - 1]
    outliers = total - prefix[i]
    p_last = last + outliers
    kept = prefix[i]

    level_term, log_q_last = _level_terms(prefix, nonempty, candidates)
    with np.errstate(divide="ignore", invalid="ignore"):
        sum_p_log_p = prefix_hlogh[i - 1] + np.where(
            p_last > 0, p_last * np.log(np.maximum(p_last, 1.0)), 0.0
        )
        outlier_term = np.where(outliers > 0, outliers * np.where(last > 0, log_q_last, -np.inf), 0.0)
        kl = (sum_p_log_p - level_term - outlier_term) / total - np.log(total) + np.log(kept)
    missing_mass = (outliers > 0) & (last == 0)
    kl = np.where(missing_mass | (kept == 0), np.inf, np.maximum(kl, 0.0))
    p_nonempty = nonempty[i] + missing_mass.astype(np.int64)
    return kl, p_nonempty <= 1


def _level_terms(
    prefix: npt.NDArray[np.float64], nonempty: npt.NDArray[np.int64], candidates: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Per candidate: sum_k L_k log(L_k/n_k) over its levels, and log Q of its last level.

    A level is a run of 1 to 16 bins, and candidates share runs: L log(L/n) is computed once per
    (first bin, width), a 2049 x 17 table instead of 1921 x 128 levels, then summed per candidate
    by a compiled loop (trtq/calib/binning.py), in the order NumPy sums a row of 128 values.
    """
    from trtq.calib.binning import level_sums  # Numba: loaded already when histograms were binned

    candidates = candidates.astype(np.int64, copy=False)
    layout = _run_layout(candidates.tobytes())
    run_mass = _run_sums(prefix, layout.widths)
    run_bins = _run_sums(nonempty, layout.widths).astype(np.float64)
    log_q = np.zeros_like(run_mass)
    np.log(run_mass / np.maximum(run_bins, 1.0), out=log_q, where=run_mass > 0)
    run_term = (run_mass * log_q).ravel()
    return level_sums(run_term, layout.widths, candidates), log_q.ravel()[layout.last_level_runs]


def _run_sums(prefix: npt.NDArray[_Number], widths: int) -> npt.NDArray[_Number]:
    """(bins + 1, widths): prefix[min(start + width, bins)] - prefix[start], the sum over every run
    of bins (first bin, width), read as sliding windows over the prefix sums (no gathered indices)."""
    padded = np.concatenate([prefix, np.full(widths - 1, prefix[-1], dtype=prefix.dtype)])
    return np.lib.stride_tricks.sliding_window_view(padded, widths) - prefix[:, None]


@dataclass(frozen=True)
class _RunLayout:
    widths: int
    """Run widths 0 .. widths - 1: every level's width is below it."""
    last_level_runs: npt.NDArray[np.int64]
    """(candidates,): the run (start * widths + width, in the raveled tables) each last level covers."""


@lru_cache(maxsize=4)
def _run_layout(candidates: bytes) -> _RunLayout:
    """The run each level covers (candidates: int64 bytes, a cheap cache key): level k of candidate
    i covers bins [ceil(k*i/128), ceil((k+1)*i/128)). The same for every histogram, so computed once."""
    i = np.frombuffer(candidates, dtype=np.int64)[:, None]
    k = np.arange(QUANT_LEVELS + 1, dtype=np.int64)[None, :]
    edges = (k * i + QUANT_LEVELS - 1) // QUANT_LEVELS
    level_widths = edges[:, 1:] - edges[:, :-1]
    widths = int(level_widths.max()) + 1
    return _RunLayout(widths, edges[:, -2] * widths + level_widths[:, -1])
