"""TensorRT's calibration cache text format (TensorRT 8 and 10).

Line 1 is ``TRT-<version>-<Algorithm>``; every other line is ``<tensor name>: <hex>``, where hex is
the big-endian float32 bit pattern of scale = amax / 127, lowercase, not zero-padded (a zero
scale is ``0``; an infinite one ``7f800000``). The version number is MAJOR*10000 + MINOR*100 +
PATCH from TensorRT 10 on, MAJOR*1000 + MINOR*100 + PATCH before.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from trtq.errors import TrtqError
from trtq.fileio import atomic_write_text
from trtq.fileset import finish_pending
from trtq.trt_versions import encode_version, version_name

KNOWN_ALGORITHMS = ("EntropyCalibration2", "MinMaxCalibration", "EntropyCalibration", "LegacyCalibration")
_HEADER = re.compile(r"^TRT-(\d+)-(\w+)$")
_HEX = re.compile(r"^[0-9a-fA-F]{1,8}$")


@dataclass(frozen=True)
class CalibrationCache:
    version: int
    """The number in the header, e.g. 101601 for TensorRT 10.16.1."""
    algorithm: str
    scales: dict[str, float] = field(default_factory=dict)

    @property
    def trt_version(self) -> str:
        return version_name(self.version)


def scale_to_hex(scale: float) -> str:
    if math.isnan(scale) or scale < 0:
        raise ValueError(f"a calibration scale must be >= 0 (or inf), got {scale}")
    try:
        packed = struct.pack(">f", scale)
    except OverflowError:
        raise ValueError(f"scale {scale} does not fit a float32") from None
    return format(struct.unpack(">I", packed)[0], "x")


def hex_to_scale(text: str) -> float:
    return float(struct.unpack(">f", struct.pack(">I", int(text, 16)))[0])


def format_cache(cache: CalibrationCache) -> str:
    lines = [f"TRT-{cache.version}-{cache.algorithm}"]
    for name, scale in cache.scales.items():
        if "\n" in name:
            raise ValueError(f"tensor name {name!r} contains a newline")
        lines.append(f"{name}: {scale_to_hex(scale)}")
    return "\n".join(lines) + "\n"


def parse_header(line: str, source: str = "<cache>") -> tuple[int, str]:
    """(version number, algorithm) of line 1, each checked for what TensorRT really writes there."""
    header = _HEADER.match(line.strip())
    if header is None:
        if line.startswith("\ufeff"):
            raise TrtqError(
                f"{source}:1: the file starts with a UTF-8 byte-order mark (an editor added it); TensorRT "
                "reads the header byte for byte and would reject it: save the file without one"
            )
        raise TrtqError(f"{source}:1: expected a header like 'TRT-101601-EntropyCalibration2', got {line!r}")
    version, algorithm = int(header.group(1)), header.group(2)
    if not (1000 <= version < 20000 or 100000 <= version < 1000000):
        raise TrtqError(
            f"{source}:1: {version} is not a TensorRT version number (101601 is 10.16.1, 8601 is 8.6.1)"
        )
    if algorithm not in KNOWN_ALGORITHMS:
        raise TrtqError(
            f"{source}:1: unknown calibrator {algorithm!r}; TensorRT writes {', '.join(KNOWN_ALGORITHMS)}"
        )
    return version, algorithm


def iter_scales(lines: Iterable[tuple[int, str]], source: str = "<cache>") -> Iterator[tuple[str, float]]:
    """(tensor, scale) for each numbered line after the header, one at a time: a cache of millions of
    tensors is never held as text or as a list of lines."""
    seen: set[str] = set()
    for number, raw in lines:
        line = raw.rstrip("\r\n")
        if not line.strip():
            continue
        # Split at the last colon: TensorFlow-exported tensor names contain ':' themselves.
        name, sep, value = line.rpartition(":")
        value = value.strip()
        if not sep or not name or not _HEX.match(value):
            raise TrtqError(f"{source}:{number}: expected '<tensor name>: <hex float32>', got {line!r}")
        if name in seen:
            raise TrtqError(f"{source}:{number}: tensor '{name}' appears twice")
        seen.add(name)
        scale = hex_to_scale(value)
        if math.isnan(scale) or scale < 0:
            raise TrtqError(f"{source}:{number}: tensor '{name}' has an invalid scale {scale} ({value})")
        yield name, scale


def parse_cache(text: str, source: str = "<cache>") -> CalibrationCache:
    lines = text.splitlines()
    if not lines:
        raise TrtqError(f"{source}:1: empty calibration cache")
    version, algorithm = parse_header(lines[0], source)
    scales = dict(iter_scales(enumerate(lines[1:], start=2), source))
    return CalibrationCache(version=version, algorithm=algorithm, scales=scales)


@contextmanager
def open_cache(path: Path | str) -> Iterator[tuple[int, str, Iterator[tuple[str, float]]]]:
    """(version, algorithm, streamed (tensor, scale) pairs) of a cache file, read line by line."""
    path = Path(path)
    finish_pending(path)  # a killed writer's committed set is completed before it is read
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise TrtqError(f"{path}: calibration cache not found") from None
    except IsADirectoryError:
        raise TrtqError(f"{path}: is a directory, not a calibration cache") from None
    except OSError as exc:
        raise TrtqError(f"{path}: cannot read calibration cache: {exc.strerror or exc}") from None
    with handle:
        lines = _decoded(handle, path)
        first = next(lines, None)
        if first is None:
            raise TrtqError(f"{path}:1: empty calibration cache")
        version, algorithm = parse_header(first[1], str(path))
        yield version, algorithm, iter_scales(lines, str(path))


def _decoded(handle: IO[bytes], path: Path) -> Iterator[tuple[int, str]]:
    for number, raw in enumerate(handle, start=1):
        try:
            yield number, raw.decode("utf-8")
        except UnicodeDecodeError:
            raise TrtqError(f"{path}:{number}: not a text calibration cache (invalid UTF-8)") from None


def read_cache(path: Path | str) -> CalibrationCache:
    with open_cache(path) as (version, algorithm, scales):
        return CalibrationCache(version=version, algorithm=algorithm, scales=dict(scales))


def write_cache(
    path: Path | str,
    scales: Mapping[str, float],
    algorithm: str = "EntropyCalibration2",
    trt_version: str | int = "10.16.1",
) -> CalibrationCache:
    """Write atomically (temporary file, then rename); returns what was written."""
    cache = make_cache(scales, algorithm, trt_version)
    atomic_write_text(Path(path), format_cache(cache))
    return cache


def make_cache(
    scales: Mapping[str, float], algorithm: str = "EntropyCalibration2", trt_version: str | int = "10.16.1"
) -> CalibrationCache:
    if algorithm not in KNOWN_ALGORITHMS:
        raise ValueError(f"algorithm must be one of {', '.join(KNOWN_ALGORITHMS)}, got {algorithm!r}")
    return CalibrationCache(encode_version(trt_version), algorithm, {k: float(v) for k, v in scales.items()})
