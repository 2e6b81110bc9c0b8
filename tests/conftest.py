"""Shared fixtures: real models and photos from registry packages (installed by the demo extra)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from trtq.data.image_list import read_image_list
from trtq.resources import resolve_path

REPO = Path(__file__).resolve().parent.parent
PHOTO_LIST = REPO / "calibrators" / "skimage_photos.txt"
DETECTOR = "pkg:rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"
TEXT_CLASSIFIER = "pkg:rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx"


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
        lines = PHOTO_LIST.read_text().splitlines()
        listed = [line for line in lines if line.startswith("pkg:")][:n_images]
        (tmp_path / "images.txt").write_text("\n".join(listed) + "\n")
        config = classifier_config("images.txt", "out/model.cache", **calibration)
        path = tmp_path / name
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    return write
