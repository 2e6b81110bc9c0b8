"""Shared fixtures: real models and photos from registry packages (installed by the demo extra)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import yaml
from hypothesis import HealthCheck, settings

from trtq.cache import read_cache
from trtq.cache.trt_format import format_cache, make_cache
from trtq.calibrate.pipeline import calibrate
from trtq.config import load_config
from trtq.data.image_list import read_image_list
from trtq.resources import resolve_path

REPO = Path(__file__).resolve().parent.parent
PHOTO_LIST = REPO / "calibrators" / "skimage_photos.txt"
DETECTOR = "pkg:rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"
TEXT_CLASSIFIER = "pkg:rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx"

# No test may depend on wall-clock speed: hypothesis's default 200 ms deadline per example and its
# too_slow health check both fail on a busy machine (a loaded 2-core CI box hit DeadlineExceeded).
settings.register_profile("trtq", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("trtq")


def listed_photos(count: int, start: int = 0) -> list[str]:
    """``pkg:`` lines of the demo's photo list: real photos, portable across installs."""
    lines = [line for line in PHOTO_LIST.read_text().splitlines() if line.startswith("pkg:")]
    return lines[start : start + count]


def preprocessed_by_hand(lines: list[str]) -> np.ndarray:
    """The classifier configs' preprocessing written out by hand: BGR, stretch to 192x48, x/255*2-1, NCHW."""
    paths = [resolve_path(line, PHOTO_LIST.parent) for line in lines]
    images = [cv2.resize(cv2.imread(str(p)), (192, 48)).transpose(2, 0, 1) for p in paths]
    return (np.stack(images).astype(np.float32) / 255.0 - 0.5) / 0.5


def minmax_scales_by_hand(model_path: Path, inputs: np.ndarray, tensors: list[str]) -> dict[str, float]:
    """max|x| / 127 (float32) of each tensor, from the model run by hand in ONNX Runtime with those
    tensors exposed as outputs: an oracle for minmax scales that shares no code with trtq."""
    model = onnx.load(str(model_path))
    input_name = model.graph.input[0].name
    outputs = {o.name for o in model.graph.output}
    model.graph.output.extend(
        onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
        for name in tensors
        if name not in outputs and name != input_name
    )
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [name for name in tensors if name != input_name]
    values = dict(zip(names, session.run(names, {input_name: inputs}), strict=True))
    values[input_name] = inputs
    return {name: float(np.float32(np.abs(values[name]).max()) / np.float32(127)) for name in tensors}


PARSER_MADE = "(Unnamed Layer* 46) [Constant]_output"


def oracle_tensors(model_path: Path) -> list[str]:
    """The classifier's input and its float activations in graph order (found by the independent graph
    walk in reference_graph.py), all but the last three: a cache of real coverage that still leaves
    tensors on the NumPy side only."""
    from reference_graph import float_activations

    model = onnx.load(str(model_path))
    activations = float_activations(model)
    ordered = [name for node in model.graph.node for name in node.output if name in activations]
    return [model.graph.input[0].name, *ordered[:-3]]


def hand_made_minmax_cache(directory: Path, n_images: int, ratios: dict[str, float]) -> Path:
    """``directory``/trt.cache, as TensorRT might write it: MinMaxCalibration scales of the classifier's
    oracle_tensors on the first ``n_images`` photos computed by hand (minmax_scales_by_hand), some
    multiplied by a known ratio, and a parser-made tensor that is not in the ONNX graph."""
    model_path = resolve_path(TEXT_CLASSIFIER, REPO)
    tensors = oracle_tensors(model_path)
    scales = minmax_scales_by_hand(model_path, preprocessed_by_hand(listed_photos(n_images)), tensors)
    edited = {name: float(np.float32(scale * ratios.get(name, 1.0))) for name, scale in scales.items()}
    edited[PARSER_MADE] = 0.01
    path = directory / "trt.cache"
    path.write_text(format_cache(make_cache(edited, "MinMaxCalibration", 101303)))
    return path


@pytest.fixture(scope="session")
def photos() -> list[Path]:
    return [entry.path for entry in read_image_list(PHOTO_LIST)]


@pytest.fixture(scope="session")
def classifier_path() -> Path:
    """PP-OCR text-direction classifier: small and fast, 3x48x192 input, dynamic batch."""
    return resolve_path(TEXT_CLASSIFIER, REPO)


def classifier_config(images: str, cache: str, **calibration: object) -> dict[str, object]:
    return {
        "model": {"path": TEXT_CLASSIFIER},
        "inputs": [{"name": "x", "shape": [2, 3, 48, 192]}],
        "preprocess": {"color": "bgr", "scale": 1 / 255, "mean": [0.5], "std": [0.5]},
        "calibration": {"images": images, "cache": cache, **calibration},
    }


WriteConfig = Callable[..., Path]


@pytest.fixture
def write_config(tmp_path: Path) -> WriteConfig:
    """Write a classifier config (image list = the first ``n_images`` photos) into tmp_path."""

    def write(n_images: int = 6, name: str = "model.yaml", **calibration: object) -> Path:
        (tmp_path / "images.txt").write_text("\n".join(listed_photos(n_images)) + "\n")
        config = classifier_config("images.txt", "out/model.cache", **calibration)
        path = tmp_path / name
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    return write


@pytest.fixture
def calibrated_on_two(write_config: WriteConfig) -> Path:
    """A classifier config calibrated through the CLI on 2 photos: its cache set is in out/ beside it."""
    from typer.testing import CliRunner

    from trtq.cli.main import app

    config = write_config(n_images=2)
    result = CliRunner().invoke(app, ["calibrate", str(config)])
    assert result.exit_code == 0, result.output
    return config


@pytest.fixture(scope="session")
def minmax_classifier(tmp_path_factory: pytest.TempPathFactory) -> tuple[onnx.ModelProto, dict[str, float]]:
    """The text-direction classifier and its minmax scales from 8 photos (calibrated once per session)."""
    tmp = tmp_path_factory.mktemp("minmax_classifier")
    (tmp / "images.txt").write_text("\n".join(listed_photos(8)) + "\n")
    config_file = tmp / "model.yaml"
    config_file.write_text(yaml.safe_dump(classifier_config("images.txt", "model.cache", algorithm="minmax")))
    config = load_config(config_file)
    calibrate(config)
    return onnx.load(str(config.model_path)), read_cache(config.cache_path).scales
