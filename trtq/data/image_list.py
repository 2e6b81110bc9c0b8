"""Calibration image lists: a text file (one path per line) or a directory of images.

A ``.npy`` entry is a tensor already preprocessed (trtq/data/tensor_file.py); lists may mix them
with images."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trtq.errors import TrtqError
from trtq.resources import resolve_path

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm"})
TENSOR_SUFFIX = ".npy"


@dataclass(frozen=True)
class ImageEntry:
    """One image and where it was listed, so errors can name the list file and line."""

    path: Path
    listed_in: Path
    line: int | None = None

    @property
    def is_tensor(self) -> bool:
        return self.path.suffix.lower() == TENSOR_SUFFIX

    @property
    def where(self) -> str:
        if self.line is None:
            return f"'{self.path}'"
        return f"{self.listed_in}:{self.line}: '{self.path}'"


def read_image_list(source: Path, max_images: int | None = None) -> list[ImageEntry]:
    """Entries in list order (a directory's images and .npy files sorted by name); blank lines and
    ``#`` comments are skipped."""
    if source.is_dir():
        entries = [
            ImageEntry(path=p, listed_in=source)
            for p in sorted(source.rglob("*"))
            if p.is_file() and (p.suffix.lower() in IMAGE_SUFFIXES or p.suffix.lower() == TENSOR_SUFFIX)
        ]
    elif source.is_file():
        entries = _read_list_file(source)
    elif source.exists():  # never read: a FIFO would block, a device never end
        raise TrtqError(f"{source}: an image list is a text file or a directory, not a special file")
    else:
        raise TrtqError(f"{source}: image list not found")
    if not entries:
        raise TrtqError(f"{source}: lists no images")
    return entries[:max_images] if max_images is not None else entries


def _read_list_file(source: Path) -> list[ImageEntry]:
    try:
        text = source.read_text(encoding="utf-8-sig")  # a byte-order mark (Windows editors) is no path
    except (OSError, UnicodeDecodeError) as exc:
        raise TrtqError(f"{source}: cannot read image list: {exc}") from None
    entries = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "\0" in line:
            raise TrtqError(
                f"{source}:{number}: the line has a NUL byte, which no path can hold "
                "(an image list is UTF-8 text, one path per line)"
            )
        try:
            path = resolve_path(line, source.parent)
        except TrtqError as exc:
            raise TrtqError(f"{source}:{number}: {exc}") from None
        entries.append(ImageEntry(path=path, listed_in=source, line=number))
    return entries
