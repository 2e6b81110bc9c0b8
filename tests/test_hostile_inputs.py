"""Inputs that must neither hang nor crash: every kind of non-image named in a list, an image whose header
claims more pixels than OpenCV decodes, NUL bytes in a list line, recursive YAML aliases and alias bombs.
Each is a per-image error (skipped under on_bad_image: skip) or a refusal naming file and line."""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import WriteConfig
from typer.testing import CliRunner

from trtq.cli.main import app
from trtq.config import load_config
from trtq.config.schema import PreprocessSection
from trtq.data import BadImageError, BatchSource, Preprocessor, read_image_list
from trtq.errors import TrtqError

PRE = Preprocessor(PreprocessSection(color="bgr", scale=1.0), 32, 32)


def png_claiming(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR for width x height 8-bit grey, with one row of pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * (width + 1))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Path]:
    """A FIFO with no writer. If some code opens it for a blocking read (as the old decoder and
    fingerprint did), a watchdog opens and closes the write end every second from 3 s on, so that code
    gets EOF instead of hanging the test, and the test fails at teardown; with no reader waiting, the
    watchdog's non-blocking open fails and it does nothing."""
    path = tmp_path / "pipe.png"
    os.mkfifo(path)
    done = threading.Event()
    readers_unblocked: list[float] = []

    def unblock() -> None:
        done.wait(3.0)
        while not done.wait(1.0):
            with contextlib.suppress(OSError):
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
                readers_unblocked.append(time.monotonic())

    threading.Thread(target=unblock, daemon=True).start()
    yield path
    done.set()
    assert readers_unblocked == [], "something opened the FIFO for a blocking read"


@pytest.fixture
def hostile(tmp_path: Path, fifo: Path) -> Iterator[dict[str, tuple[Path, str]]]:
    """Each kind of listed entry that is not a usable image, with the reason trtq must give."""
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "huge.png").write_bytes(png_claiming(40000, 40000))
    sock = socket.socket(socket.AF_UNIX)
    with pytest.MonkeyPatch.context() as patch:  # a relative name: socket paths are limited to ~108 bytes
        patch.chdir(tmp_path)
        sock.bind("sock.png")
    yield {
        "fifo": (fifo, "is a FIFO (named pipe), not an image"),
        "directory": (tmp_path / "folder.png", "is a directory, not an image"),
        "device": (Path("/dev/null"), "is a character device, not an image"),
        "socket": (tmp_path / "sock.png", "is a socket, not an image"),
        "huge header": (
            tmp_path / "huge.png",
            "cannot decode image: its header claims more pixels than OpenCV decodes "
            "(CV_IO_MAX_IMAGE_PIXELS, 2^30 by default)",
        ),
    }
    sock.close()


def test_each_kind_is_a_bad_image_error_naming_list_file_and_line(
    tmp_path: Path, photos: list[Path], hostile: dict[str, tuple[Path, str]]
) -> None:
    for kind, (path, reason) in hostile.items():
        listing = tmp_path / f"{kind}.txt"
        listing.write_text(f"{photos[0]}\n{path}\n")
        started = time.perf_counter()
        with pytest.raises(BadImageError) as info:
            list(BatchSource(read_image_list(listing), PRE, batch_size=1))
        assert str(info.value) == f"{listing}:2: '{path}': {reason}", kind
        assert time.perf_counter() - started < 2, kind  # the FIFO watchdog fires at 3 s


def test_skip_policy_skips_every_kind_and_keeps_the_photos(
    tmp_path: Path, photos: list[Path], hostile: dict[str, tuple[Path, str]]
) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(str(p) for p in [photos[0], *(p for p, _ in hostile.values()), photos[1]]))
    source = BatchSource(read_image_list(listing), PRE, batch_size=2, on_bad_image="skip")
    batches = list(source)
    assert [e.path for b in batches for e in b.entries] == photos[:2]
    assert [(s.entry.line, s.reason) for s in source.stats.skipped] == [
        (line, reason) for line, (_, reason) in enumerate(hostile.values(), start=2)
    ]


def test_calibrate_skips_a_fifo_and_a_huge_header_without_hanging(
    write_config: WriteConfig, tmp_path: Path, fifo: Path
) -> None:
    """End to end: the fingerprint hashes every listed file before calibrating, so it must not read
    the FIFO either."""
    config = write_config(n_images=2, on_bad_image="skip")
    (tmp_path / "huge.png").write_bytes(png_claiming(40000, 40000))
    images = tmp_path / "images.txt"
    images.write_text(images.read_text() + f"{fifo}\n{tmp_path / 'huge.png'}\n")
    started = time.perf_counter()
    result = CliRunner().invoke(app, ["calibrate", str(config)])
    assert result.exit_code == 0, result.output
    assert time.perf_counter() - started < 30
    assert "2 skipped" in result.output and "FIFO" in result.output and "more pixels" in result.output


@pytest.mark.parametrize(
    "line", ["a\x00b.png", "\x00", "photo.png\x00.jpg"], ids=["middle", "alone", "before-suffix"]
)
def test_a_nul_byte_in_a_list_line_is_refused_with_file_and_line(tmp_path: Path, line: str) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text(f"# photos\nfirst.png\n{line}\n")
    with pytest.raises(TrtqError) as info:
        read_image_list(listing)
    assert str(info.value).startswith(f"{listing}:3: the line has a NUL byte")


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_list_that_is_no_regular_file_is_refused_unread(fifo: Path, kind: str) -> None:
    source = fifo if kind == "fifo" else Path("/dev/zero")
    with pytest.raises(TrtqError) as info:
        read_image_list(source)
    assert str(info.value) == f"{source}: an image list is a text file or a directory, not a special file"


def test_a_utf16_list_is_refused_at_its_first_line(tmp_path: Path) -> None:
    listing = tmp_path / "list.txt"
    listing.write_bytes("a.png\nb.png\n".encode("utf-16-le"))
    with pytest.raises(TrtqError, match=rf"^{listing}:1: the line has a NUL byte"):
        read_image_list(listing)


CONFIG = """\
model:
  path: model.onnx
inputs:
  - name: x
    shape: &shape [1, 3, 48, 192]
calibration:
  images: images.txt
  cache: out/model.cache
"""

BOMB = "".join(
    f"{name}: &{name} [{', '.join([f'*{previous}'] * 9) if previous else ', '.join(['lol'] * 9)}]\n"
    for previous, name in zip(["", "a", "b", "c", "d", "e"], ["a", "b", "c", "d", "e", "f"], strict=True)
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            CONFIG + "qdq: &q\n  exclude: [*q]\n",
            r"model.yaml:10: invalid YAML: alias \*q is inside the collection it names \(a recursive alias\)",
        ),
        (
            CONFIG.replace("model:\n  path: model.onnx", "model: &m\n  path: model.onnx\n  again: *m"),
            r"model.yaml:3: invalid YAML: alias \*m is inside the collection it names",
        ),
        (
            CONFIG + BOMB,
            r"model.yaml:14: invalid YAML: with its aliases expanded this holds more than 100000 values "
            r"\(an alias bomb\?\)",
        ),
        (
            CONFIG + "deep: " + "[" * 70 + "]" * 70 + "\n",
            r"model.yaml:9: invalid YAML: nested deeper than 64 levels",
        ),
        (
            CONFIG + "".join(f"l{i}: &l{i} [*l{i - 1}]\n" for i in range(1, 70)).replace("[*l0]", "[0]"),
            r"model.yaml:\d+: invalid YAML: with its aliases expanded this nests deeper than 64 levels",
        ),
    ],
    ids=["recursive-sequence", "recursive-mapping", "bomb", "deep", "deep-by-aliases"],
)
def test_alias_recursion_bombs_and_depth_are_refused_quickly(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "model.yaml"
    path.write_text(text)
    started = time.perf_counter()
    with pytest.raises(TrtqError, match=expected):
        load_config(path)
    assert time.perf_counter() - started < 0.5


def test_plain_aliases_still_work(tmp_path: Path) -> None:
    text = CONFIG.replace(
        "    shape: &shape [1, 3, 48, 192]",
        "    min: &shape [1, 3, 48, 192]\n    opt: *shape\n    max: *shape",
    )
    path = tmp_path / "model.yaml"
    path.write_text(text)
    config = load_config(path)
    assert config.calibration_shape == (1, 3, 48, 192)
    assert yaml.safe_load(text)["inputs"][0]["max"] == [1, 3, 48, 192]


@pytest.mark.parametrize("character", ["\x00", "\x1b", "\x7f", "\x80"])
def test_a_control_character_in_a_config_is_one_error_naming_file_and_line(
    tmp_path: Path, character: str
) -> None:
    # YAML's reader refuses them before parsing (PyYAML's ReaderError, which is no MarkedYAMLError):
    # it was an internal error.
    config = tmp_path / "model.yaml"
    config.write_text(f"model:\n  path: m.onnx{character}\n", encoding="utf-8")
    with pytest.raises(TrtqError, match=rf"model\.yaml:2: invalid YAML: character U\+{ord(character):04X} "):
        load_config(config)
