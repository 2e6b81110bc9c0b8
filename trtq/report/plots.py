"""Matplotlib figures rendered to PNG bytes (Agg backend: no display needed)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from trtq.calib.entropy import EntropyResult
from trtq.calib.histogram import TrtHistogram

COLOURS = {"entropy": "tab:red", "minmax": "tab:blue", "percentile": "tab:green", "mse": "tab:purple"}


def png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def tensor_figure(
    name: str, histogram: TrtHistogram, amax: Mapping[str, float], entropy: EntropyResult
) -> bytes:
    """|x| histogram on a log scale with each algorithm's threshold, beside the KL curve of the search."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 3.2))
    width = histogram.bin_width
    edges = np.arange(histogram.num_bins + 1) * width
    left.stairs(np.maximum(histogram.counts, 0.5), edges, fill=True, color="0.6")
    left.set_yscale("log")
    for algorithm, value in amax.items():
        left.axvline(
            value, color=COLOURS.get(algorithm, "black"), linewidth=1.2, label=f"{algorithm} {value:.4g}"
        )
    left.set_title(f"{name}: |x| histogram ({histogram.doublings} range doublings)", fontsize=9)
    left.set_xlabel("|x|")
    left.set_ylabel("count (log)")
    left.legend(fontsize=7)
    finite = np.isfinite(entropy.divergence)
    thresholds = (entropy.candidates + 0.5) * width
    right.plot(thresholds[finite], entropy.divergence[finite], color="tab:red", linewidth=1)
    degenerate = finite & entropy.degenerate
    if degenerate.any():
        right.scatter(
            thresholds[degenerate], entropy.divergence[degenerate], s=6, color="black", label="degenerate"
        )
        right.legend(fontsize=7)
    right.axvline(float(entropy.amax), color="tab:red", linestyle="--", linewidth=1)
    right.set_title(
        "KL(P||Q) per candidate threshold (entropy search; zero bin set to bin 1's count)", fontsize=9
    )
    right.set_xlabel("threshold")
    right.set_yscale("log")
    return png(figure)


def crosscheck_figure(cache_scales: Sequence[float], numpy_scales: Sequence[float]) -> bytes:
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 3.5))
    cache = np.asarray(cache_scales, dtype=np.float64)
    mine = np.asarray(numpy_scales, dtype=np.float64)
    usable = (cache > 0) & (mine > 0) & np.isfinite(cache) & np.isfinite(mine)
    left.loglog(mine[usable], cache[usable], ".", markersize=4)
    low, high = (
        float(min(mine[usable].min(), cache[usable].min())),
        float(max(mine[usable].max(), cache[usable].max())),
    )
    left.plot([low, high], [low, high], color="0.5", linewidth=0.8)
    left.set_xlabel("NumPy scale")
    left.set_ylabel("cache scale")
    left.set_title("per-tensor scales", fontsize=9)
    right.hist(np.log2(cache[usable] / mine[usable]), bins=60, color="tab:blue")
    right.set_xlabel("log2(cache / NumPy)")
    right.set_title("scale ratios", fontsize=9)
    return png(figure)


def sensitivity_figure(tensors: Sequence[str], damage: Sequence[float]) -> bytes:
    figure, axis = plt.subplots(figsize=(11, 0.25 * len(tensors) + 1.2))
    positions = np.arange(len(tensors))
    axis.barh(positions, damage, color="tab:orange")
    axis.set_yticks(positions, tensors, fontsize=7)
    axis.invert_yaxis()
    axis.set_xlabel("1 - output cosine with only this activation quantized")
    axis.set_title("most damaging activations", fontsize=9)
    return png(figure)


def latency_figure(samples: Mapping[str, Sequence[float]]) -> bytes:
    figure, axis = plt.subplots(figsize=(11, 3.2))
    for label, values in samples.items():
        axis.hist(values, bins=40, alpha=0.6, label=f"{label} (n={len(values)})")
    axis.set_xlabel("latency (ms)")
    axis.set_ylabel("queries")
    axis.legend(fontsize=7)
    axis.set_title("latency distribution per target (trtq bench)", fontsize=9)
    return png(figure)
