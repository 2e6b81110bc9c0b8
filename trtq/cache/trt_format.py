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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from trtq.errors import TrtqError
from trtq.fileio import atomic_write_text

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
        return ".".join(map(str, decode_version(self.version)))


def encode_version(version: str | int) -> int:
    """'10.16.1' -> 101601, '8.6.1' -> 8601; an int is taken as already encoded."""
    if isinstance(version, int):
        return version
    parts = [int(p) for p in version.split(".")]
    if not 2 <= len(parts) <= 4:
        raise ValueError(f"'{version}' is not a TensorRT version like 10.16.1")
    major, minor, patch = [*parts, 0][:3]
    return major * (10000 if major >= 10 else 1000) + minor * 100 + patch


def decode_version(number: int) -> tuple[int, int, int]:
    major = number // 10000 if number >= 100000 else number // 1000
    rest = number - major * (10000 if number >= 100000 else 1000)
    return major, rest // 100, rest % 100


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


def parse_cache(text: str, source: str = "<cache>") -> CalibrationCache:
    lines = text.splitlines()
    if not lines:
        raise TrtqError(f"{source}:1: empty calibration cache")
    header = _HEADER.match(lines[0].strip())
    if header is None:
        raise TrtqError(
            f"{source}:1: expected a header like 'TRT-101601-EntropyCalibration2', got {lines[0]!r}"
        )
    scales: dict[str, float] = {}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        # Split at the last colon: TensorFlow-exported tensor names contain ':' themselves.
        name, sep, value = line.rpartition(":")
        value = value.strip()
        if not sep or not name or not _HEX.match(value):
            raise TrtqError(f"{source}:{number}: expected '<tensor name>: <hex float32>', got {line!r}")
        if name in scales:
            raise TrtqError(f"{source}:{number}: tensor '{name}' appears twice")
        scale = hex_to_scale(value)
        if math.isnan(scale) or scale < 0:
            raise TrtqError(f"{source}:{number}: tensor '{name}' has an invalid scale {scale} ({value})")
        scales[name] = scale
    return CalibrationCache(version=int(header.group(1)), algorithm=header.group(2), scales=scales)


def read_cache(path: Path | str) -> CalibrationCache:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise TrtqError(f"{path}: calibration cache not found") from None
    except OSError as exc:
        raise TrtqError(f"{path}: cannot read calibration cache: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise TrtqError(f"{path}:{line}: not a text calibration cache (invalid UTF-8)") from None
    return parse_cache(text, str(path))


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
