"""Whole-model calibration on the demo model: trtq vs ONNX Runtime's quantize_static calibrators.

Each method runs in its own process on the same preprocessed batches (the demo config's images,
preprocessing and 640x640 opt shape) and reports wall time and peak resident memory (ru_maxrss).
ONNX Runtime's calibrators are the ones quantize_static uses (create_calibrator + collect_data +
compute_data); trtq's figure includes every algorithm's threshold for every tensor.

    python benchmarks/calibration.py [--images 4 8 16] [--methods ...] [--json out/bench/calibration.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import demo_batches, demo_config, machine
from rich.console import Console
from rich.table import Table

METHODS = ("trtq", "ort-minmax", "ort-entropy", "ort-percentile")


def run_one(method: str, images: int) -> dict[str, Any]:
    """Runs in the child process: calibrate, then report time and peak RSS."""
    config = demo_config()
    start = time.perf_counter()
    if method == "trtq":
        from trtq.calib.pipeline import calibration_entries, collect_histograms
        from trtq.config import ALGORITHMS

        run = collect_histograms(config, calibration_entries(config)[:images])
        for name in run.histograms:
            for algorithm in ALGORITHMS:
                run.amax(name, algorithm)
        tensors = len(run.histograms)
    else:
        from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod
        from onnxruntime.quantization.calibrate import create_calibrator

        class Reader(CalibrationDataReader):  # type: ignore[misc]
            def __init__(self) -> None:
                self.batches = demo_batches(config, images)

            def get_next(self) -> dict[str, Any] | None:
                batch = next(self.batches, None)
                return None if batch is None else {config.image_input.name: batch}

        calibration_method = {
            "ort-minmax": CalibrationMethod.MinMax,
            "ort-entropy": CalibrationMethod.Entropy,
            "ort-percentile": CalibrationMethod.Percentile,
        }[method]
        with tempfile.TemporaryDirectory() as tmp:
            calibrator = create_calibrator(
                str(config.model_path),
                None,
                str(Path(tmp) / "augmented.onnx"),
                calibrate_method=calibration_method,
            )
            calibrator.collect_data(Reader())
            tensors = len(calibrator.compute_data().data)
    seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"method": method, "images": images, "seconds": seconds, "peak_mib": peak_mib, "tensors": tensors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--json", type=Path, default=Path("out/bench/calibration.json"))
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "IMAGES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child[0], int(args.child[1]))))
        return

    results = []
    for images in args.images:
        for method in args.methods:
            child = subprocess.run(
                [sys.executable, __file__, "--child", method, str(images)],
                capture_output=True,
                text=True,
                check=False,
            )
            if child.returncode != 0:
                results.append(
                    {"method": method, "images": images, "error": child.stderr.strip().splitlines()[-1]}
                )
            else:
                results.append(json.loads(child.stdout.strip().splitlines()[-1]))
            print(results[-1], file=sys.stderr)
    table = Table(title=f"Calibration of the demo model (PP-OCRv4 det, 640x640): {machine()}")
    for column in ("method", "images", "seconds", "s/image", "peak MiB", "tensors"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for row in results:
        if "error" in row:
            table.add_row(row["method"], str(row["images"]), "failed", "", "", row["error"][:40])
        else:
            table.add_row(
                row["method"],
                str(row["images"]),
                f"{row['seconds']:.1f}",
                f"{row['seconds'] / row['images']:.2f}",
                f"{row['peak_mib']:.0f}",
                str(row["tensors"]),
            )
    Console(width=130).print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": machine(), "results": results}, indent=1))


if __name__ == "__main__":
    main()
