"""Photos of people for the YOLOv8n detector of configs/yolov8n.yaml (nudenet's 320n.onnx: faces,
covered feet, ...), from packages only: scikit-image's LFW faces (skimage/data/lfw_subset.npy,
100 faces of 25x25, tiled into 3x3 and 4x4 mosaics), its astronaut and cameraman, and Debian's
opencv-doc (apt-get install opencv-doc): frames of vtest.avi (pedestrians) and Megamind.avi (a
face), and its stills of people (basketball*, left06, pca_test1, messi5).

The two lists share no source photo: calibration takes LFW faces 0-71, vtest.avi and scikit-image's
astronaut and cameraman; held-out takes LFW faces 72-99, Megamind.avi and opencv-doc's stills.
The calibration list (96 images) ends with the 24 that `trtq calibrate` holds back at batch 8
(`holdout: 0.25`): LFW faces 36-71 and vtest.avi's frames 660 and 760, none of which (but the
scene of the video) comes earlier in the list.

    python calibrators/people_photos.py out/people
writes out/people/*.png, calibration.txt and heldout.txt (deterministic: no random choice).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
from itertools import chain, islice
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from trtq.resources import resolve_path

Image = npt.NDArray[np.uint8]
OPENCV_DOC = Path("/usr/share/doc/opencv-doc/examples/data")
SIDE = 320
STILLS = ("basketball1.png", "basketball2.png", "left06.jpg", "pca_test1.jpg", "messi5.jpg")


def lfw_faces() -> Image:
    """scikit-image's 100 LFW faces (the first half of lfw_subset.npy; the rest are not faces)."""
    faces = np.load(resolve_path("pkg:skimage/data/lfw_subset.npy", Path.cwd()))[:100]
    return np.asarray(np.round(faces * 255), dtype=np.uint8)


def mosaics(faces: Image, first: int, last: int, grid: int) -> Iterator[Image]:
    """Faces ``first``..``last`` (inclusive) tiled ``grid`` x ``grid`` into SIDE x SIDE BGR images;
    a last incomplete mosaic is dropped."""
    tile = SIDE // grid
    for start in range(first, last + 2 - grid * grid, grid * grid):
        tiles = [
            cv2.resize(faces[start + i], (tile, tile), interpolation=cv2.INTER_CUBIC) for i in range(grid**2)
        ]
        rows = [np.hstack(tiles[r * grid : (r + 1) * grid]) for r in range(grid)]
        yield cv2.cvtColor(np.vstack(rows), cv2.COLOR_GRAY2BGR)


def lfw_part(faces: Image, first: int, last: int) -> Iterator[Image]:
    """3x3 and 4x4 mosaics of the faces, each also mirrored."""
    for grid in (3, 4):
        for mosaic in mosaics(faces, first, last, grid):
            yield mosaic
            yield mosaic[:, ::-1]


def frames(video: Path, numbers: Sequence[int]) -> Iterator[Image]:
    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise SystemExit(f"{video}: cannot be read (apt-get install opencv-doc)")
    for number in numbers:
        capture.set(cv2.CAP_PROP_POS_FRAMES, number)
        ok, frame = capture.read()
        if not ok:
            raise SystemExit(f"{video}: no frame {number}")
        yield frame


def windows(image: Image, size: int) -> Iterator[Image]:
    """The whole image, then ``size`` x ``size`` windows in a grid that reaches every border."""
    yield image
    h, w = image.shape[:2]
    for y in np.linspace(0, h - size, max(1, round(h / size))).astype(int):
        for x in np.linspace(0, w - size, max(1, round(w / size))).astype(int):
            yield image[y : y + size, x : x + size]


def vtest(numbers: Sequence[int]) -> Iterator[Image]:
    """Pedestrians are small in the 768x576 frames: each frame whole and as six 256x256 windows."""
    for frame in frames(OPENCV_DOC / "vtest.avi", numbers):
        yield from windows(frame, 256)


def skimage_photos() -> Iterator[Image]:
    for name in ("astronaut.png", "camera.png"):
        photo = cv2.imread(str(resolve_path(f"pkg:skimage/data/{name}", Path.cwd())))
        yield photo
        yield photo[:, ::-1]


def exactly(count: int, images: Iterator[Image]) -> Iterator[Image]:
    taken = list(islice(images, count))
    if len(taken) != count:
        raise SystemExit(f"{len(taken)} images where {count} were planned")
    yield from taken


def calibration(faces: Image) -> Iterator[Image]:
    """72 images, then the 24 `trtq calibrate` holds back at batch 8 (from sources not used before)."""
    yield from exactly(72, chain(skimage_photos(), lfw_part(faces, 0, 35), vtest(range(0, 600, 60))))
    yield from exactly(24, chain(lfw_part(faces, 36, 71), vtest((660, 760))))


def heldout(faces: Image) -> Iterator[Image]:
    yield from lfw_part(faces, 72, 99)
    for name in STILLS:
        photo = cv2.imread(str(OPENCV_DOC / name))
        if photo is None:
            raise SystemExit(f"{OPENCV_DOC / name}: missing (apt-get install opencv-doc)")
        for view in windows(photo, min(photo.shape[:2]) * 2 // 3):
            yield view
            yield view[:, ::-1]
    yield from frames(OPENCV_DOC / "Megamind.avi", range(0, 270, 5))


def write(directory: Path, prefix: str, images: Iterator[Image]) -> list[str]:
    names = []
    for index, image in enumerate(images):
        name = f"{prefix}_{index:03d}.png"
        cv2.imwrite(str(directory / name), np.ascontiguousarray(image))
        names.append(name)
    (directory / f"{prefix}.txt").write_text("".join(f"{name}\n" for name in names))
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    args = parser.parse_args()
    args.directory.mkdir(parents=True, exist_ok=True)
    faces = lfw_faces()
    for prefix, images in (("calibration", calibration(faces)), ("heldout", heldout(faces))):
        names = write(args.directory, prefix, images)
        print(f"{len(names)} images in {args.directory / (prefix + '.txt')}")


if __name__ == "__main__":
    main()
