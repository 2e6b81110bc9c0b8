"""`trtq tune` against everything a user would try first, on the same tuning and held-out images.

    python benchmarks/tune.py classifier --config CLASSIFIER.yaml [--tune-images 48] [--eval-images 240]
    python benchmarks/tune.py detector [--tune-images 27] [--eval-images 40]

Options not listed here go to `trtq tune`.

Rows (all INT8 models run as Q/DQ in ONNX Runtime with WeightBiasQuantization disabled, scored
against FP32 on the held-out images only):
- trtq tune (the command below, its wall and CPU time),
- each single trtq algorithm (one calibration pass on the tuning images, per-channel max weights),
- trtq sensitivity's proposal (ranked on the tuning images with the best single algorithm, its
  proposed layers kept in float),
- ONNX Runtime quantize_static (QDQ, per-channel int8 weights; MinMax and Percentile, symmetric
  activations as TensorRT needs and asymmetric ones TensorRT cannot run),
- ModelOpt's ONNX INT8 quantizer (entropy and max calibration), when its [onnx] extra imports.
- per_image: no model of its own; every single algorithm's relative output error on each tuning
  and each held-out image, summed two ways: pooled, and as the mean of per-image errors.

The classifier is EfficientNet-Lite0 from benchmarks/classifier.py (its config's calibration list
gives the tuning images, its heldout.txt the held-out ones); the detector is configs/demo.yaml's
PP-OCRv4, held out on the first 40 Debian opencv-doc photos (as in benchmarks/accuracy.py) and tuned
on DET_TUNING: photos in which it finds text, none of them held out.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import yaml
from accuracy import det_config
from common import REPO
from datasets import OPENCV_DOC
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

from trtq.calib.run import collect_histograms
from trtq.compare.models import compare_models, evaluation_inputs, run
from trtq.compare.sensitivity import analyse_sensitivity
from trtq.config import ALGORITHMS, LoadedConfig, load_config
from trtq.data.from_config import batch_source, calibration_entries
from trtq.model.runner import OnnxRunner
from trtq.qdq.export import at_least_qdq_opset, export_qdq

SENSITIVITY_BATCHES = 2
GROUPS = ("tune", "tuned", "single", "sensitivity", "ort", "modelopt", "per_image")
"""``tuned``: score the tuned model already in the work folder, without tuning again."""

_SKIMAGE = ["cell", "chelsea", "clock_motion", "coffee", "horse", "moon", "page", "phantom", "rocket"]
_OPENCV_DOC = [
    "licenseplate_motion.jpg", "messi5.jpg", "notes.png", "opencv-logo-white.png", "opencv-logo.png",
    "orange.jpg", "pca_test1.jpg", "pic1.png", "pic2.png", "pic3.png", "pic5.png", "pic6.png",
    "rubberwhale1.png", "rubberwhale2.png", "smarties.png", "starry_night.jpg", "stuff.jpg", "sudoku.png",
]  # fmt: skip
DET_TUNING = [
    photo
    for pair in zip(
        [f"pkg:skimage/data/{name}.{'jpg' if name == 'rocket' else 'png'}" for name in _SKIMAGE],
        [str(OPENCV_DOC / name) for name in _OPENCV_DOC[: len(_SKIMAGE)]],
        strict=True,
    )
    for photo in pair
] + [str(OPENCV_DOC / name) for name in _OPENCV_DOC[len(_SKIMAGE) :]]
"""The detector's tuning photos: every scikit-image photo and every opencv-doc photo outside the
held-out first 40 (leaving out left*/right*.jpg, stereo partners of held-out chessboard photos) in
which the FP32 detector marks about 0.1% of the pixels or more as text (probability > 0.3; the
least, pic6.png, 0.097%), alternating the two sources; `--text-shares` lists every candidate's
share. Its PP-OCRv4 map is zero on many photos; tuning on those fitted noise (docs/accuracy.md)."""
TEXT_PROBABILITY = 0.3
DET_FRESH = [
    "/usr/share/doc/python3-pip/html/topics/deps.png",
    "/usr/share/doc/nodejs/contributing/doc_img/compare-boxplot.png",
    "/usr/share/doc/nodejs/contributing/doc_img/youtube-stream-share.png",
    "/usr/share/doc/nodejs/contributing/doc_img/youtube-stream-analytics.png",
    "/usr/share/doc/nodejs/contributing/doc_img/scatter-plot.png",
    "/usr/share/doc/nodejs/contributing/doc_img/youtube-stream-title-description.png",
    "/usr/share/doc/nodejs/contributing/doc_img/youtube-stream-status.png",
    "/usr/share/doc/valgrind/html/images/kcachegrind_xtree.png",
    "/usr/share/doc/valgrind/html/images/dh-tree.png",
    "/usr/share/info/gnupg-module-overview.png",
]
"""``--fresh``: images with rendered text (screenshots, diagrams, plots) from the documentation of
Debian packages installed here (python3-pip, nodejs, valgrind, gnupg), every PNG or JPEG of 15 kB
or more under /usr/share/doc and /usr/share/info outside opencv-doc. No choice of trtq tune's
defaults or tuning photos looked at them: they are scored once, after those choices."""


def text_shares(work: Path) -> None:
    """Print the share of map pixels above TEXT_PROBABILITY for every candidate tuning photo."""
    config, eval_list = det_config(work, 0, 40)
    held_out = {Path(line).name for line in eval_list.read_text().splitlines()}
    skimage = [
        line
        for line in (REPO / "calibrators" / "skimage_photos.txt").read_text().splitlines()
        if line.startswith("pkg:")
    ]
    opencv = [
        str(p)
        for p in sorted(OPENCV_DOC.iterdir())
        if p.suffix in (".jpg", ".png")
        and p.name not in held_out
        and not p.name.startswith(("left", "right"))
    ]
    candidates = work / "text_candidates.txt"
    candidates.write_text("\n".join(skimage + opencv) + "\n")
    batches, count = evaluation_inputs(config, candidates)
    fp32 = OnnxRunner(onnx.load(str(config.model_path)))
    (probability,) = run(fp32, config.image_input.name, batches, count).values()
    for photo, image in zip(skimage + opencv, probability, strict=True):
        share = float(np.mean(image > TEXT_PROBABILITY))
        print(f"{share:8.5f}  {'DET_TUNING' if photo in DET_TUNING else '          '}  {photo}")


def classifier_config(
    work: Path, config: Path, tune_images: int, eval_images: int
) -> tuple[LoadedConfig, Path]:
    data = yaml.safe_load(config.read_text())
    source = load_config(config)
    lines = [line for line in source.images_path.read_text().splitlines() if line.strip()]
    (work / "tune.txt").write_text("\n".join(lines[:tune_images]) + "\n")
    heldout = [line for line in (config.parent / "heldout.txt").read_text().splitlines() if line.strip()]
    (work / "eval.txt").write_text("\n".join(heldout[:eval_images]) + "\n")
    data["model"]["path"] = str(source.model_path)
    data["calibration"].update(images=str(work / "tune.txt"), cache=str(work / "classifier.cache"))
    path = work / "classifier.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_config(path), work / "eval.txt"


def detector_config(work: Path, tune_images: int, eval_images: int) -> tuple[LoadedConfig, Path]:
    """benchmarks/accuracy.py's detector config and held-out photos, with DET_TUNING as its images."""
    config, eval_list = det_config(work, 0, eval_images)
    held_out = set(eval_list.read_text().splitlines())
    tuning = DET_TUNING[:tune_images]
    if held_out.intersection(tuning):
        raise SystemExit(f"tuning photos held out: {sorted(held_out.intersection(tuning))}")
    config.images_path.write_text("\n".join(tuning) + "\n")
    return load_config(config.source), eval_list


def run_tune(config: LoadedConfig, eval_list: Path, work: Path, extra: list[str]) -> dict[str, Any]:
    command = [
        sys.executable, "-m", "trtq", "tune", str(config.source), "--tune-images", str(config.images_path),
        "--images", str(eval_list), "-o", str(work / "tuned.qdq.onnx"), *extra,
    ]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary: dict[str, Any] = json.loads((work / "tuned.tune.json").read_text())
    summary["benchmark"] = {
        "command": " ".join(["python", *command[1:]]),
        "wall_s": round(time.perf_counter() - started, 1),
        "cpu_s": round(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, 1),
    }
    return summary


def ort_model(
    config: LoadedConfig, method: CalibrationMethod, symmetric: bool, work: Path
) -> onnx.ModelProto:
    model = at_least_qdq_opset(onnx.load(str(config.model_path)))  # the opset trtq's Q/DQ models have
    source, target = work / "fp32.onnx", work / "ort_qdq.onnx"
    onnx.save(model, str(source))
    data = [batch.data for batch in batch_source(config, calibration_entries(config))]

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        """Batches in order; CalibStridedMinMax asks for its length and reads it range by range."""

        def __init__(self) -> None:
            self.items = iter(data)

        def get_next(self) -> dict[str, Any] | None:
            batch = next(self.items, None)
            return None if batch is None else {config.image_input.name: batch}

        def __len__(self) -> int:
            return len(data)

        def set_range(self, start_index: int, end_index: int) -> None:
            self.items = iter(data[start_index:end_index])

    quantize_static(
        str(source), str(target), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, calibrate_method=method,
        extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True,
                       "CalibStridedMinMax": 2 if len(data) % 2 == 0 else 1},
    )  # fmt: skip
    return onnx.load(str(target))


def modelopt_model(config: LoadedConfig, method: str, work: Path) -> onnx.ModelProto:
    from modelopt.onnx.quantization import quantize

    data = np.concatenate([batch.data for batch in batch_source(config, calibration_entries(config))])
    target = work / f"modelopt_{method}.onnx"
    quantize(
        str(config.model_path), quantize_mode="int8", calibration_data={config.image_input.name: data},
        calibration_method=method, calibration_eps=["cpu"], output_path=str(target), log_level="WARNING",
    )  # fmt: skip
    return onnx.load(str(target))


def per_image(config: LoadedConfig, images: Path, models: dict[str, onnx.ModelProto]) -> dict[str, Any]:
    """Each image's relative output error (squared error over FP32 energy) per model, and the two ways
    to sum them: pooled (what trtq tune minimises) and the mean of per-image errors (over the images
    whose FP32 output energy is at least 1e-4 of the largest: the others divide by almost nothing)."""
    batches, count = evaluation_inputs(config, images)
    input_name = config.image_input.name
    names = [line for line in images.read_text().splitlines() if line.strip()][:count]
    reference = run(OnnxRunner(onnx.load(str(config.model_path))), input_name, batches, count)
    total = sum(_per_sample(ref.astype(np.float64) ** 2) for ref in reference.values())
    result: dict[str, Any] = {"images": [Path(n).name for n in names], "fp32_energy": total.tolist()}
    for label, model in models.items():
        outputs = run(OnnxRunner(model), input_name, batches, count)
        noise = sum(
            _per_sample((ref.astype(np.float64) - outputs[o].astype(np.float64)) ** 2)
            for o, ref in reference.items()
        )
        lit = total > 1e-4 * total.max()
        result[label] = {
            "per_image": (noise / np.maximum(total, 1e-12)).round(4).tolist(),
            "pooled": float(noise.sum() / total.sum()),
            "mean_per_image": float(np.mean(noise[lit] / total[lit])),
        }
    return result


def _per_sample(values: np.ndarray) -> np.ndarray:
    return np.asarray(values.reshape(values.shape[0], -1).sum(axis=1))


def benchmark(
    name: str, config: LoadedConfig, eval_list: Path, work: Path, tune_args: list[str], groups: set[str]
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    tuned = (
        run_tune(config, eval_list, work, tune_args)
        if "tune" in groups
        else json.loads((work / "tuned.tune.json").read_text())
    )
    batches, count = evaluation_inputs(config, eval_list)
    input_name = config.image_input.name
    fp32 = onnx.load(str(config.model_path))
    reference = run(OnnxRunner(fp32), input_name, batches, count)

    def record(variant: str, model: onnx.ModelProto, note: str = "") -> None:
        (metrics,) = compare_models(reference, run(OnnxRunner(model), input_name, batches, count))
        rows.append({"model": name, "variant": variant, "note": note, **metrics.to_json()})
        print(json.dumps(rows[-1]), flush=True)

    if groups & {"tune", "tuned"}:
        timing = tuned.get("benchmark")
        record(
            "trtq tune",
            onnx.load(str(work / "tuned.qdq.onnx")),
            f"{len(tuned['float_layers'])} of {tuned['settings']['conv_gemm_layers']} Conv/Gemm in FP16"
            + (f"; {timing['wall_s']} s wall, {timing['cpu_s']} s CPU" if timing else "; tuned earlier"),
        )
    calibration = collect_histograms(config, calibration_entries(config))
    if "per_image" in groups:
        singles = {a: export_qdq(fp32, calibration.scales(a)).model for a in ALGORITHMS}
        for part, images in (("tuning", config.images_path), ("held-out", eval_list)):
            errors = per_image(config, images, singles)
            rows.append({"model": name, "variant": f"per-image errors, {part}", **errors})
            print(json.dumps(rows[-1]), flush=True)
    if "single" in groups:
        for algorithm in ALGORITHMS:
            record(f"trtq {algorithm}", export_qdq(fp32, calibration.scales(algorithm)).model)
    if "sensitivity" in groups:
        best = tuned["best_single_algorithm"]
        tuning = [b.data for b in batch_source(config, calibration_entries(config))][:SENSITIVITY_BATCHES]
        sensitivity = analyse_sensitivity(
            fp32, calibration.scales(best), input_name, tuning, len(tuning) * config.batch_size
        )
        record(
            f"trtq sensitivity proposal ({best})",
            export_qdq(fp32, calibration.scales(best), sensitivity.proposal).model,
            f"{len(sensitivity.proposal)} layers in float: {', '.join(sensitivity.proposal)}",
        )
    for method in (CalibrationMethod.MinMax, CalibrationMethod.Percentile):
        for symmetric in (True, False):
            if "ort" not in groups:
                continue
            label = (
                f"ORT quantize_static {method.name}, {'symmetric' if symmetric else 'asymmetric'} activations"
            )
            note = "" if symmetric else "zero points: TensorRT cannot run it"
            try:
                model = ort_model(config, method, symmetric, work)
            except Exception as exc:  # ONNX Runtime's calibrators fail on some models: say so, go on
                traceback.print_exc()
                rows.append({"model": name, "variant": label, "note": f"failed: {type(exc).__name__}: {exc}"})
                continue
            record(label, model, note)
    for method in ("entropy", "max") if "modelopt" in groups else ():
        try:
            model = modelopt_model(config, method, work)
        except Exception as exc:  # report why ModelOpt could not run, keep the other rows
            traceback.print_exc()
            rows.append(
                {
                    "model": name,
                    "variant": f"ModelOpt {method}",
                    "note": f"failed: {type(exc).__name__}: {exc}",
                }
            )
            continue
        record(f"ModelOpt {method}", model)
    output = work / f"tune_benchmark_{'_'.join(sorted(groups))}.json"
    output.write_text(json.dumps({"tune": tuned, "rows": rows}, indent=1) + "\n")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", choices=["classifier", "detector"])
    parser.add_argument("--config", type=Path, help="classifier config made by benchmarks/classifier.py")
    parser.add_argument("--tune-images", type=int)
    parser.add_argument("--eval-images", type=int)
    parser.add_argument("--out", type=Path, default=REPO / "out" / "tune_benchmark")
    parser.add_argument("--text-shares", action="store_true", help="detector: how DET_TUNING was chosen")
    parser.add_argument("--fresh", action="store_true", help="detector: score on DET_FRESH, not the held-out")
    parser.add_argument(
        "--rows",
        default=",".join(GROUPS),
        help=f"which rows, comma-separated from {','.join(GROUPS)} (without tune: the last tune.json)",
    )
    args, tune_args = parser.parse_known_args()  # the rest goes to trtq tune
    work = args.out / args.model
    work.mkdir(parents=True, exist_ok=True)
    if args.text_shares:
        text_shares(work)
        return
    if args.model == "classifier":
        if args.config is None:
            parser.error("classifier needs --config")
        config, eval_list = classifier_config(
            work, args.config, args.tune_images or 48, args.eval_images or 240
        )
    else:
        config, eval_list = detector_config(work, args.tune_images or len(DET_TUNING), args.eval_images or 40)
        if args.fresh:
            used = set(eval_list.read_text().splitlines()) | set(DET_TUNING)
            if used.intersection(DET_FRESH):
                raise SystemExit(f"fresh images already used: {sorted(used.intersection(DET_FRESH))}")
            eval_list = work / "det_fresh.txt"
            eval_list.write_text("\n".join(DET_FRESH) + "\n")
    groups = set(args.rows.split(","))
    for row in benchmark(args.model, config, eval_list, work, tune_args, groups):
        print(row)


if __name__ == "__main__":
    main()
