"""KL (entropy) threshold search time per tensor: trtq vs ONNX Runtime vs NVIDIA ModelOpt, same data.

Every implementation searches histograms of the demo model's real activations (PP-OCRv4 detector,
the demo's calibration photos), each in the form its own calibrator builds them:

- trtq and ModelOpt's ``_compute_amax_entropy``: the same TensorRT-rule histogram, 2048 bins of |x|,
  range from the first batch, doubled when a later batch exceeds it.
- ONNX Runtime's ``get_entropy_threshold``: the histogram ``quantize_static`` builds, i.e. one
  ``HistogramCollector.collect`` call over every batch's activations at once (its calibrator keeps
  all intermediate outputs and collects once), at its default 128 bins and at 2048 bins.

All are timed on the same tensors (spread over the network), with one untimed warm-up call and
the same number of timed repetitions each; the table gives the median over tensors of each
tensor's median time, and the spread (the 10th-90th percentile of the per-tensor medians).

    python benchmarks/kl_search.py [--images 8] [--tensors 16] [--repeats 3]

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


def timed(repeats: int, run: Callable[[], Any]) -> tuple[float, Any]:
    """One untimed warm-up call, then the median of ``repeats`` timed calls, and the result."""
    result = run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=8, help="calibration images feeding the histograms")
    parser.add_argument("--tensors", type=int, default=16, help="tensors timed, spread over the network")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per tensor and implementation")
    parser.add_argument("--json", type=Path, default=Path("out/bench/kl_search.json"))
    args = parser.parse_args()

    from modelopt.torch.quantization.calib.histogram import _compute_amax_entropy

    config = demo_config()
    trt_hists: dict[str, TrtHistogram] = {}
    kept: dict[str, list[np.ndarray]] = {}  # every batch of the timed tensors only, for ONNX Runtime
    sample: list[str] = []
    for activations in demo_activations(config, args.images):
        if not sample:
            names = list(activations)
            sample = names[:: max(1, len(names) // args.tensors)][: args.tensors]
        for name, value in activations.items():
            trt_hists.setdefault(name, TrtHistogram()).update(value)
            if name in sample:
                kept.setdefault(name, []).append(value)
    sample = [name for name in sample if trt_hists[name].range > 0]
    chosen = {name: kept[name] for name in sample}
    del kept
    # symmetric=True as trtq's ONNX Runtime rows are set up; the entropy path ignores it either way.
    ort_default = HistogramCollector("entropy", True, 128, 128, 99.99, "same")
    ort_2048 = HistogramCollector("entropy", True, 2048, 128, 99.99, "same")
    ort_default.collect(chosen)  # one call over all batches, as quantize_static's calibrator does
    ort_2048.collect(chosen)
    bins_built = {len(ort_default.histogram_dict[n][0]) for n in sample}
    del chosen

    def modelopt(name: str) -> float:
        h = trt_hists[name]
        edges = np.linspace(0, h.range, h.num_bins + 1)
        return float(_compute_amax_entropy(h.counts.copy(), edges, 8, False))

    def ort(collector: HistogramCollector) -> Callable[[str], float]:
        return lambda n: max(
            abs(float(t)) for t in collector.get_entropy_threshold(collector.histogram_dict[n], 128)
        )

    searches: dict[str, Callable[[str], float]] = {
        "trtq entropy_threshold (NumPy, vectorised)": lambda n: float(entropy_threshold(trt_hists[n]).amax),
        "ModelOpt _compute_amax_entropy (2048 bins)": modelopt,
        "ONNX Runtime get_entropy_threshold, 2048 bins": ort(ort_2048),
        "ONNX Runtime get_entropy_threshold, 128 bins (quantize_static default)": ort(ort_default),
    }
    times: dict[str, list[float]] = {label: [] for label in searches}
    amaxes: dict[str, dict[str, float]] = {label: {} for label in searches}
    for name in sample:  # implementations interleaved per tensor, so load changes hit all alike
        for label, search in searches.items():
            seconds, amax = timed(args.repeats, lambda search=search, name=name: search(name))
            times[label].append(seconds)
            amaxes[label][name] = float(amax)
    rows = {
        label: {
            "tensors": len(sample),
            "median_ms": 1e3 * float(np.median(times[label])),
            "p10_ms": 1e3 * float(np.percentile(times[label], 10)),
            "p90_ms": 1e3 * float(np.percentile(times[label], 90)),
            "amax": amaxes[label],
        }
        for label in searches
    }

    reference = rows["trtq entropy_threshold (NumPy, vectorised)"]["amax"]
    table = Table(
        title=f"KL search per tensor: demo model, {args.images} images, {len(sample)} tensors, "
        f"1 warm-up + {args.repeats} timed calls each: {machine()}"
    )
    for column in ("implementation", "median ms", "p10-p90 ms", "median amax / trtq amax"):
        table.add_column(column, justify="left" if column == "implementation" else "right")
    for label, row in rows.items():
        ratio = np.median([row["amax"][n] / reference[n] for n in row["amax"]])
        table.add_row(
            label, f"{row['median_ms']:.2f}", f"{row['p10_ms']:.2f}-{row['p90_ms']:.2f}", f"{ratio:.3f}"
        )
    console = Console(width=130)
    console.print(table)
    console.print(f"ONNX Runtime's default histograms have {sorted(bins_built)} bins (one collect call)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {"machine": machine(), "images": args.images, "repeats": args.repeats, "results": rows}, indent=1
        )
    )


if __name__ == "__main__":
    main()
