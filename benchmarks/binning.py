"""Cost per activation value of TensorRT-rule binning: NumPy's exact counting against trtq's compiled pass.

One real batch of every calibrated activation of each model (the demo detector at batch 1, the
EfficientNet-Lite0 classifier at batch 8), each tensor binned at its own max |x|:

- ``max|x| (floor)``: ``x.max()`` and ``x.min()``, what the calibration floor computes;
- ``NumPy add.at``: |x| * scale truncated into an index array, then ``np.add.at`` (the previous
  implementation, 64 K values at a time);
- ``trtq kernel``: ``trtq.calib.binning.scan_counts`` (max |x| and counts, compiled), one thread;
- ``trtq update_batch``: the whole batch as ``trtq calibrate`` bins it (16 tasks per usable core).

The counts of the NumPy and trtq rows are checked equal before anything is timed.

    python benchmarks/classifier.py out/classifier     # once
    python benchmarks/binning.py [--classifier out/classifier] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import numpy.typing as npt
from common import REPO, demo_activations
from rich.console import Console
from rich.table import Table

from trtq.calib.binning import scan_counts
from trtq.calib.histogram import CHUNK, NUM_BINS, TrtHistogram, update_batch
from trtq.calib.run import HISTOGRAM_TASKS, HISTOGRAM_THREADS
from trtq.config import load_config

Values = npt.NDArray[np.float32]


def numpy_counts(values: Values, scale: np.float32) -> npt.NDArray[np.int64]:
    counts = np.zeros(NUM_BINS + 1, dtype=np.int64)
    magnitudes = np.empty(1 << 16, dtype=np.float32)
    indices = np.empty(1 << 16, dtype=np.intp)
    for start in range(0, values.size, 1 << 16):
        chunk = values[start : start + (1 << 16)]
        np.abs(chunk, out=magnitudes[: chunk.size])
        np.multiply(magnitudes[: chunk.size], scale, out=indices[: chunk.size], casting="unsafe")
        np.add.at(counts, indices[: chunk.size], 1)
    return counts


def one_batch(config_path: Path) -> list[Values]:
    config = load_config(config_path)
    activations = next(demo_activations(config, config.batch_size))
    return [np.ascontiguousarray(values, dtype=np.float32).ravel() for values in activations.values()]


def best_of(repeats: int, work: Callable[[], object]) -> float:
    work()  # warm-up: caches, compiled kernels
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(tensors: list[Values], repeats: int) -> list[float]:
    """Seconds per method on these tensors, each binned at its own max |x|."""
    limits = [float(np.abs(values).max()) for values in tensors]
    scales = [np.float32(NUM_BINS / limit) for limit in limits]
    for values, scale, limit in zip(tensors, scales, limits, strict=True):
        _, counts = scan_counts(values, scale, limit, NUM_BINS, CHUNK)
        assert counts is not None and np.array_equal(counts, numpy_counts(values, scale))
    names = [str(i) for i in range(len(tensors))]
    histograms = [TrtHistogram() for _ in tensors]
    with ThreadPoolExecutor(max_workers=HISTOGRAM_THREADS) as pool:
        update_batch(histograms, names, tensors, pool, HISTOGRAM_TASKS)  # sets the ranges
        return [
            best_of(repeats, lambda: [(v.max(), v.min()) for v in tensors]),
            best_of(repeats, lambda: [numpy_counts(v, s) for v, s in zip(tensors, scales, strict=True)]),
            best_of(
                repeats,
                lambda: [
                    scan_counts(v, s, lim, NUM_BINS, CHUNK)
                    for v, s, lim in zip(tensors, scales, limits, strict=True)
                ],
            ),
            best_of(repeats, lambda: update_batch(histograms, names, tensors, pool, HISTOGRAM_TASKS)),
        ]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--classifier", type=Path, default=REPO / "out" / "classifier")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    configs = {
        "demo detector": REPO / "configs" / "demo.yaml",
        "classifier": args.classifier / "efficientnet_lite0_b8.yaml",
    }
    table = Table(title=f"ns per activation value, best of {args.repeats} (one batch)")
    for column in ("model", "values", "max|x| (floor)", "NumPy add.at", "trtq kernel", "trtq update_batch"):
        table.add_column(column, justify="left" if column == "model" else "right", no_wrap=True)
    for model, config_path in configs.items():
        tensors = [values for values in one_batch(config_path) if np.abs(values).max() > 0]
        size = sum(values.size for values in tensors)
        timings = measure(tensors, args.repeats)
        table.add_row(model, f"{size:,}", *(f"{seconds * 1e9 / size:.2f}" for seconds in timings))
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
