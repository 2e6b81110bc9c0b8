"""Entropy calibration against batch size: TensorRT's histogram range doubles when a later batch
exceeds it, more often with small batches, and the KL search then clips harder.

For each model and calibration batch size: one calibration pass (TensorRT's histogram rules),
the share of tensors whose range doubled, and each algorithm's Q/DQ model (ONNX Runtime, CPU)
against FP32 on held-out photos from other sources than the calibration photos.

- ppocrv4_det (the demo detector): calibration on scikit-image's photos (the demo list),
  held out: the first 40 opencv-doc photos; metric: output cosine.
- efficientnet_lite0 (ReLU6 ImageNet classifier, benchmarks/classifier.py): calibration on the first
  48 of its shuffled scikit-image crops, held out: the first 240 opencv-doc crops; metrics: top-1
  and top-5 agreement with FP32, output cosine.

    python benchmarks/entropy_batch.py [--batches 1 8] [--models det lite0] [--without-zero-bin-rule]

--without-zero-bin-rule searches the raw histogram (bins[0] kept), to show what the rule changes.

Needs Debian's opencv-doc, and torch for the classifier's export.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import onnx
import yaml
from common import REPO, machine
from datasets import OPENCV_DOC
from rich.console import Console
from rich.table import Table

from trtq.calib.run import collect_histograms
from trtq.compare.models import compare_models, evaluation_inputs, run
from trtq.config import ALGORITHMS, LoadedConfig, load_config
from trtq.data.from_config import calibration_entries
from trtq.model.runner import OnnxRunner
from trtq.qdq import export_qdq


def detector(work: Path, batch: int) -> tuple[LoadedConfig, Path]:
    data = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    data["model"]["path"] = "pkg:rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"
    data["inputs"] = [{"name": "x", "shape": [batch, 3, 640, 640]}]
    data["calibration"].update(
        images=str(REPO / "calibrators" / "skimage_photos.txt"), cache=str(work / "det.cache")
    )
    data["calibration"].pop("batch_size", None)
    photos = sorted(p for p in OPENCV_DOC.iterdir() if p.suffix in (".jpg", ".png"))[:40]
    heldout = work / "det_heldout.txt"
    heldout.write_text("\n".join(str(p) for p in photos) + "\n")
    path = work / f"det_b{batch}.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path), heldout


def classifier(work: Path, batch: int) -> tuple[LoadedConfig, Path]:
    from classifier import prepare

    prepared = prepare(work / "lite0", batch)
    data = yaml.safe_load(prepared["config"].read_text())
    data["calibration"]["max_images"] = 48
    path = work / f"lite0_b{batch}.yaml"
    path.write_text(yaml.safe_dump(data))
    heldout = work / "lite0_heldout.txt"
    heldout.write_text("\n".join(prepared["heldout"].read_text().splitlines()[:240]) + "\n")
    return load_config(path), heldout


def measure(name: str, config: LoadedConfig, heldout: Path) -> list[dict[str, Any]]:
    run_ = collect_histograms(config, calibration_entries(config))
    doubled = sum(1 for h in run_.histograms.values() if h.doublings > 0) / len(run_.histograms)
    batches, count = evaluation_inputs(config, heldout)
    input_name = config.image_input.name
    reference = run(OnnxRunner(config.model_path), input_name, batches, count)
    model = onnx.load(str(config.model_path))
    rows = []
    for algorithm in ALGORITHMS:
        qdq = export_qdq(model, run_.scales(algorithm)).model
        metrics = compare_models(reference, run(OnnxRunner(qdq), input_name, batches, count))[0]
        rows.append(
            {
                "model": name,
                "batch": config.batch_size,
                "calibration_images": run_.stats.used,
                "tensors_doubled": doubled,
                "algorithm": algorithm,
                **metrics.to_json(),
            }
        )
        print(rows[-1])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--models", nargs="+", default=["det", "lite0"], choices=["det", "lite0"])
    parser.add_argument("--json", type=Path, default=Path("out/bench/entropy_batch.json"))
    parser.add_argument("--without-zero-bin-rule", action="store_true", help="entropy on the raw histogram")
    args = parser.parse_args()
    if args.without_zero_bin_rule:
        import trtq.calib.entropy

        trtq.calib.entropy.with_zero_bin_rule = lambda counts: counts.copy()
    makers = {"det": ("ppocrv4_det", detector), "lite0": ("efficientnet_lite0", classifier)}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for key in args.models:
            name, make = makers[key]
            for batch in args.batches:
                rows += measure(name, *make(Path(tmp), batch))
    table = Table(title=f"Calibration batch size vs INT8 accuracy (Q/DQ in ONNX Runtime): {machine()}")
    for column in ("model", "batch", "images", "tensors doubled", "algorithm", "cosine", "top-1", "top-5"):
        table.add_column(column, justify="left" if column in ("model", "algorithm") else "right")
    for r in rows:
        top1, top5 = r["top1_agreement"], r["top5_agreement"]
        table.add_row(
            r["model"],
            str(r["batch"]),
            str(r["calibration_images"]),
            f"{100 * r['tensors_doubled']:.0f}%",
            r["algorithm"],
            f"{r['cosine']:.4f}",
            "-" if top1 is None else f"{top1:.3f}",
            "-" if top5 is None else f"{top5:.3f}",
        )
    Console(width=130).print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
