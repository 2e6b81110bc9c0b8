"""Shared fixtures: real models and photos from registry packages (installed by the demo extra)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import onnx
import pytest
import yaml
from hypothesis import HealthCheck, settings

from trtq.cache import read_cache
from trtq.calib.pipeline import calibrate
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
