"""Image lists -> batches: order, partial last batch, bad images with file and line, skip policy."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from trtq.config.schema import PreprocessSection
from trtq.data import BadImageError, BatchSource, Preprocessor, read_image_list
from trtq.errors import TrtqError

PRE = Preprocessor(PreprocessSection(color="bgr", scale=1.0), 32, 32)


def write_list(tmp_path: Path, photos: list[Path], extra: dict[int, str] | None = None) -> Path:
    lines = ["# calibration set", ""] + [str(p) for p in photos]
    for index, text in (extra or {}).items():
        lines.insert(index, text)
    path = tmp_path / "list.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_list_file_skips_comments_and_keeps_line_numbers(tmp_path: Path, photos: list[Path]) -> None:
    entries = read_image_list(write_list(tmp_path, photos[:3]))
    assert [e.path for e in entries] == photos[:3]
    assert [e.line for e in entries] == [3, 4, 5]
    assert read_image_list(write_list(tmp_path, photos[:5]), max_images=2)[-1].path == photos[1]


def test_relative_and_package_entries(tmp_path: Path, photos: list[Path]) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.png").write_bytes(photos[0].read_bytes())
    (tmp_path / "list.txt").write_text("sub/a.png\npkg:skimage/data/coffee.png\n")
    entries = read_image_list(tmp_path / "list.txt")
    assert entries[0].path == tmp_path / "sub" / "a.png"
    assert entries[1].path.name == "coffee.png" and entries[1].path.is_file()


def test_directory_is_sorted_images_only(tmp_path: Path, photos: list[Path]) -> None:
    for name in ["b.png", "a.jpg", "notes.txt"]:
        (tmp_path / name).write_bytes(photos[0].read_bytes())
    assert [e.path.name for e in read_image_list(tmp_path)] == ["a.jpg", "b.png"]


def test_batches_preserve_list_order(tmp_path: Path, photos: list[Path]) -> None:
    entries = read_image_list(write_list(tmp_path, photos[:7]))
    source = BatchSource(entries, PRE, batch_size=3, workers=3)
    batches = list(source)
    assert [b.data.shape for b in batches] == [(3, 3, 32, 32), (3, 3, 32, 32)]
    assert [e.path for b in batches for e in b.entries] == [e.path for e in entries[:6]]
    for batch in batches:
        for item, entry in zip(batch.data, batch.entries, strict=True):
            np.testing.assert_array_equal(item, PRE(cv2.imread(str(entry.path))))
    assert (source.stats.used, source.stats.dropped, source.stats.batches) == (6, 1, 2)


def test_wrap_fills_the_last_batch_from_the_start(tmp_path: Path, photos: list[Path]) -> None:
    entries = read_image_list(write_list(tmp_path, photos[:7]))
    source = BatchSource(entries, PRE, batch_size=3, last_batch="wrap")
    batches = list(source)
    assert len(batches) == 3 == source.expected_batches
    assert [e.path for e in batches[-1].entries] == [photos[6], photos[0], photos[1]]
    assert source.stats.wrapped == 2


def test_bad_images_name_list_file_and_line(tmp_path: Path, photos: list[Path]) -> None:
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (tmp_path / "empty.png").write_bytes(b"")
    cases = {
        "missing.jpg": "image file not found",
        "broken.jpg": "cannot decode image",
        "empty.png": "cannot decode",
    }
    for name, reason in cases.items():
        path = write_list(tmp_path, photos[:4], extra={4: name})
        with pytest.raises(BadImageError) as info:
            list(BatchSource(read_image_list(path), PRE, batch_size=2))
        assert str(info.value).startswith(f"{path}:5: '{tmp_path / name}': {reason}")


def test_skip_policy_counts_bad_images_and_keeps_going(tmp_path: Path, photos: list[Path]) -> None:
    path = write_list(tmp_path, photos[:4], extra={3: "missing-1.jpg", 6: "missing-2.jpg"})
    source = BatchSource(read_image_list(path), PRE, batch_size=2, on_bad_image="skip")
    batches = list(source)
    assert [e.path for b in batches for e in b.entries] == photos[:4]
    assert [(s.entry.line, s.reason) for s in source.stats.skipped] == [
        (4, "image file not found"),
        (7, "image file not found"),
    ]


def test_a_list_whose_every_image_was_skipped_says_so_with_the_first_reason(tmp_path: Path) -> None:
    # Wrap cannot help when nothing is usable: the error names the skipped images, not wrap.
    path = tmp_path / "list.txt"
    path.write_text("missing-1.jpg\nmissing-2.jpg\n")
    source = BatchSource(read_image_list(path), PRE, batch_size=1, last_batch="wrap", on_bad_image="skip")
    with pytest.raises(TrtqError) as info:
        list(source)
    assert str(info.value) == (
        f"{path}: no usable image, all 2 were skipped (calibration.on_bad_image: skip); the first: "
        f"{path}:1: '{tmp_path / 'missing-1.jpg'}': image file not found"
    )


def test_too_few_images_for_one_batch(tmp_path: Path, photos: list[Path]) -> None:
    with pytest.raises(TrtqError, match="1 usable image"):
        list(BatchSource(read_image_list(write_list(tmp_path, photos[:1])), PRE, batch_size=2))


def test_wrap_goes_round_a_list_shorter_than_one_batch(tmp_path: Path, photos: list[Path]) -> None:
    entries = read_image_list(write_list(tmp_path, photos[:2]))
    source = BatchSource(entries, PRE, batch_size=5, last_batch="wrap")
    (batch,) = list(source)
    assert [e.path for e in batch.entries] == [photos[0], photos[1], photos[0], photos[1], photos[0]]
    assert (source.stats.used, source.stats.wrapped, source.stats.batches) == (2, 3, 1)


def test_empty_or_missing_list(tmp_path: Path) -> None:
    (tmp_path / "list.txt").write_text("# nothing\n")
    with pytest.raises(TrtqError, match="lists no images"):
        read_image_list(tmp_path / "list.txt")
    with pytest.raises(TrtqError, match="image list not found"):
        read_image_list(tmp_path / "nope.txt")


def test_a_list_with_a_byte_order_mark_reads_its_first_image(tmp_path: Path, photos: list[Path]) -> None:
    listing = tmp_path / "list.txt"
    listing.write_bytes(b"\xef\xbb\xbf" + f"{photos[0]}\n{photos[1]}\n".encode())
    assert [entry.path for entry in read_image_list(listing)] == photos[:2]
