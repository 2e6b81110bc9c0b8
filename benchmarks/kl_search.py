"""KL (entropy) threshold search time per tensor: trtq vs ONNX Runtime vs NVIDIA ModelOpt, same data.

All three search histograms of the demo model's real activations (PP-OCRv4 detector, demo
calibration photos). trtq and ModelOpt search the same 2048-bin |x| histogram built by TensorRT's
rules; ONNX Runtime searches its own signed histogram of the same activations, at its default of
128 bins (a single candidate) and at 2048 bins (comparable resolution).

    python benchmarks/kl_search.py [--images 8] [--sample 12] [--json out/bench/kl_search.json]

Needs the bench extra (onnxruntime ships its quantization tools; ModelOpt needs a CPU torch).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from common import demo_activations, demo_config, machine
from onnxruntime.quantization.calibrate import HistogramCollector
from rich.console import Console
from rich.table import Table

from trtq.calib.entropy import entropy_threshold
from trtq.calib.histogram import TrtHistogram


def best_of(repeats: int, run: Callable[[], Any]) -> tuple[float, Any]:
    """Minimum wall time of ``repeats`` runs (the usual estimate of a function's own cost), and its result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=8, help="calibration images feeding the histograms")
    parser.add_argument("--sample", type=int, default=12, help="tensors timed for the slow implementations")
    parser.add_argument("--json", type=Path, default=Path("out/bench/kl_search.json"))
    args = parser.parse_args()

    from modelopt.torch.quantization.calib.histogram import _compute_amax_entropy

    config = demo_config()
    trt_hists: dict[str, TrtHistogram] = {}
    ort_default = HistogramCollector("entropy", True, 128, 128, 99.99, "same")
    ort_2048 = HistogramCollector("entropy", True, 2048, 128, 99.99, "same")
    for activations in demo_activations(config, args.images):
        for name, value in activations.items():
            trt_hists.setdefault(name, TrtHistogram()).update(value)
        ort_default.collect(activations)
        ort_2048.collect(activations)
    names = [n for n, h in trt_hists.items() if h.range > 0]
    sample = names[:: max(1, len(names) // args.sample)][: args.sample]

    rows: dict[str, dict[str, Any]] = {}

    def record(label: str, tensors: list[str], search: Callable[[str], float], repeats: int) -> None:
        times, amaxes = [], {}
        for name in tensors:
            seconds, amax = best_of(repeats, lambda name=name: search(name))
            times.append(seconds)
            amaxes[name] = float(amax)
        rows[label] = {
            "tensors": len(tensors),
            "median_ms": 1e3 * float(np.median(times)),
            "max_ms": 1e3 * float(np.max(times)),
            "amax": amaxes,
        }

    record("trtq (NumPy, vectorised)", names, lambda n: entropy_threshold(trt_hists[n]).amax, 5)

    def modelopt(name: str) -> float:
        h = trt_hists[name]
        edges = np.linspace(0, h.range, h.num_bins + 1)
        return float(_compute_amax_entropy(h.counts.copy(), edges, 8, False))

    record("ModelOpt _compute_amax_entropy", sample, modelopt, 1)
    record(
        "ONNX Runtime get_entropy_threshold, 2048 bins",
        sample,
        lambda n: max(abs(float(t)) for t in ort_2048.get_entropy_threshold(ort_2048.histogram_dict[n], 128)),
        1,
    )
    record(
        "ONNX Runtime get_entropy_threshold, 128 bins (default)",
        sample,
        lambda n: max(
            abs(float(t)) for t in ort_default.get_entropy_threshold(ort_default.histogram_dict[n], 128)
        ),
        3,
    )

    reference = rows["trtq (NumPy, vectorised)"]["amax"]
    table = Table(title=f"KL search per tensor: demo model, {args.images} images, {machine()}")
    for column in ("implementation", "tensors timed", "median ms", "max ms", "median amax / trtq amax"):
        table.add_column(column, justify="left" if column == "implementation" else "right")
    for label, row in rows.items():
        ratio = np.median([row["amax"][n] / reference[n] for n in row["amax"]])
        table.add_row(
            label, str(row["tensors"]), f"{row['median_ms']:.2f}", f"{row['max_ms']:.2f}", f"{ratio:.3f}"
        )
    Console(width=130).print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": machine(), "images": args.images, "results": rows}, indent=1))


if __name__ == "__main__":
    main()
