"""TensorRT's calibration cache text format, with every header TensorRT has written.

Line 1, the header, is one of:

- ``TRT-<version>-<Algorithm>`` (TensorRT 5.1 on), the version number as in trtq.trt_versions;
- ``1`` (TensorRT 4): the CalibrationAlgoType of the entropy calibrator, and nothing else;
- ``0 <hex> <hex>`` (IInt8LegacyCalibrator, written so up to TensorRT 8 at least): CalibrationAlgoType
  0, then the calibrator's regression cutoff and quantile as big-endian float64 bit patterns.

The older two name no TensorRT version. Every other line is ``<tensor name>: <hex>``, where hex is
the big-endian float32 bit pattern of scale = amax / 127, lowercase, not zero-padded (a zero scale
is ``0``; an infinite one ``7f800000``).
"""

from __future__ import annotations

import io
import math
import re
import struct
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import IO

from trtq.errors import TrtqError
from trtq.fileio import atomic_write_text
from trtq.fileset import finish_pending
from trtq.trt_versions import encode_version, version_name

KNOWN_ALGORITHMS = ("EntropyCalibration2", "MinMaxCalibration", "EntropyCalibration", "LegacyCalibration")
_HEADER = re.compile(r"^TRT-(\d+)-(\w+)$")
_LEGACY_HEADER = re.compile(r"^0 ([0-9a-fA-F]{1,16}) ([0-9a-fA-F]{1,16})$")
_HEX = re.compile(r"^[0-9a-fA-F]{1,8}$")
_ONNXRUNTIME_LINE = re.compile(r"^\S+ [-+]?(\d+(\.\d*)?([eE][-+]?\d+)?|inf|nan)$")
"""A line of ONNX Runtime's write_calibration_table: tensor name, space, amax in decimal."""


class CacheFormat(Enum):
    """Which header line 1 is; the value names it in messages."""

    TRT = "TensorRT's TRT-<version>-<Algorithm> format"
    TENSORRT4 = "TensorRT 4's format (header '1')"
    LEGACY = "IInt8LegacyCalibrator's format (header '0 <regression cutoff> <quantile>')"


@dataclass(frozen=True)
class CacheHeader:
    format: CacheFormat
    algorithm: str
    version: int | None = None
    """The number in a TRT- header, e.g. 101601 for TensorRT 10.16.1; None where the header has none."""
    regression_cutoff: float | None = None
    quantile: float | None = None
    """The legacy calibrator's settings: TensorRT uses such a cache only if they match its calibrator's."""

    @property
    def trt_version(self) -> str | None:
        return None if self.version is None else version_name(self.version)

    def describe(self) -> str:
        """One line for ``cache inspect``; says so when the header names no TensorRT version."""
        if self.format is CacheFormat.TRT:
            return f"TensorRT {self.trt_version} ({self.version}), {self.algorithm}"
        settings = (
            f", regression cutoff {self.regression_cutoff!r}, quantile {self.quantile!r}"
            if self.format is CacheFormat.LEGACY
            else ""
        )
        return f"{self.format.value}, {self.algorithm}{settings}; no TensorRT version in the header"


@dataclass(frozen=True)
class CalibrationCache:
    """A parsed cache: its header and its scales in file order (version, algorithm: the header's)."""

    header: CacheHeader
    scales: dict[str, float] = field(default_factory=dict)

    @property
    def version(self) -> int | None:
        return self.header.version

    @property
    def algorithm(self) -> str:
        return self.header.algorithm

    @property
    def trt_version(self) -> str | None:
        return self.header.trt_version


class NotATensorRTCache(TrtqError):
    """Another tool's calibration file: named for what it is, not reported as a broken cache."""


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
    """The text of a TRT-<version>-<Algorithm> cache: the only header trtq writes."""
    if cache.header.format is not CacheFormat.TRT:
        raise ValueError(
            f"trtq writes caches in {CacheFormat.TRT.value} only, not {cache.header.format.value}"
        )
    lines = [f"TRT-{cache.version}-{cache.algorithm}"]
    for name, scale in cache.scales.items():
        if "\n" in name:
            raise ValueError(f"tensor name {name!r} contains a newline")
        lines.append(f"{name}: {scale_to_hex(scale)}")
    return "\n".join(lines) + "\n"


def quoted(line: str, limit: int = 120) -> str:
    """A line as error messages show it: without its line end, control characters escaped, cut short."""
    line = line.rstrip("\r\n")
    return repr(line) if len(line) <= limit else f"{line[:limit]!r}..."


def parse_header(line: str, source: str = "<cache>") -> CacheHeader:
    """Line 1, checked for what TensorRT really writes there; another tool's table is named as such."""
    text = line.strip()
    if (header := _HEADER.match(text)) is not None:
        return _trt_header(int(header.group(1)), header.group(2), source)
    if text == "1":
        return CacheHeader(CacheFormat.TENSORRT4, "EntropyCalibration")
    if (legacy := _LEGACY_HEADER.match(text)) is not None:
        cutoff = _hex_double(legacy.group(1), "regression cutoff", source)
        quantile = _hex_double(legacy.group(2), "quantile", source)
        return CacheHeader(CacheFormat.LEGACY, "LegacyCalibration", None, cutoff, quantile)
    if line.startswith("\ufeff"):
        raise TrtqError(
            f"{source}:1: the file starts with a UTF-8 byte-order mark (an editor added it); TensorRT "
            "reads the header byte for byte and would reject it: save the file without one"
        )
    if _ONNXRUNTIME_LINE.match(text):
        raise NotATensorRTCache(
            f"{source}:1: this is ONNX Runtime's calibration table (write_calibration_table: "
            f"'<tensor> <amax in decimal>' lines, no header; line 1 is {quoted(line)}), not a TensorRT "
            "calibration cache, which starts with a header like 'TRT-101601-EntropyCalibration2'"
        )
    raise TrtqError(
        f"{source}:1: expected a header like 'TRT-101601-EntropyCalibration2' (or TensorRT 4's '1', or "
        f"the legacy calibrator's '0 <hex> <hex>'), got {quoted(line)}"
    )


def _trt_header(version: int, algorithm: str, source: str) -> CacheHeader:
    try:
        version_name(version)
    except ValueError as exc:
        raise TrtqError(f"{source}:1: {exc}") from None
    if algorithm not in KNOWN_ALGORITHMS:
        raise TrtqError(
            f"{source}:1: unknown calibrator {algorithm!r}; TensorRT writes {', '.join(KNOWN_ALGORITHMS)}"
        )
    return CacheHeader(CacheFormat.TRT, algorithm, version)


def _hex_double(text: str, name: str, source: str) -> float:
    """A legacy header's setting: the float64 bit pattern in hex, a fraction in [0, 1] (NvInfer.h)."""
    value: float = struct.unpack(">d", int(text, 16).to_bytes(8, "big"))[0]
    if not 0 <= value <= 1:
        raise TrtqError(
            f"{source}:1: the legacy calibrator's {name} {text} is {value}, not a fraction in [0, 1]"
        )
    return value


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
            raise TrtqError(f"{source}:{number}: expected '<tensor name>: <hex float32>', got {quoted(line)}")
        if name in seen:
            raise TrtqError(f"{source}:{number}: tensor {quoted(name)} appears twice")
        seen.add(name)
        scale = hex_to_scale(value)
        if math.isnan(scale) or scale < 0:
            raise TrtqError(
                f"{source}:{number}: tensor {quoted(name)} has an invalid scale {scale} ({value})"
            )
        yield name, scale


def parse_cache(data: str | bytes, source: str = "<cache>") -> CalibrationCache:
    """A cache held in memory, read exactly as a file is (lines end at b'\\n' only)."""
    handle = io.BytesIO(data.encode("utf-8") if isinstance(data, str) else data)
    header, scales = _header_and_scales(handle, source)
    return CalibrationCache(header, dict(scales))


@contextmanager
def open_cache(path: Path | str) -> Iterator[tuple[CacheHeader, Iterator[tuple[str, float]]]]:
    """The header and the streamed (tensor, scale) pairs of a cache file, read line by line."""
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
        yield _header_and_scales(handle, str(path))


def _header_and_scales(handle: IO[bytes], source: str) -> tuple[CacheHeader, Iterator[tuple[str, float]]]:
    lines = _decoded(handle, source)
    first = next(lines, None)
    if first is None:
        raise TrtqError(f"{source}:1: empty calibration cache")
    return parse_header(first[1], source), iter_scales(lines, source)


def _decoded(handle: IO[bytes], source: str) -> Iterator[tuple[int, str]]:
    for number, raw in enumerate(handle, start=1):
        try:
            yield number, raw.decode("utf-8")
        except UnicodeDecodeError:
            raise TrtqError(f"{source}:{number}: not a text calibration cache (invalid UTF-8)") from None


def read_cache(path: Path | str) -> CalibrationCache:
    with open_cache(path) as (header, scales):
        return CalibrationCache(header, dict(scales))


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
    """A cache with a TRT-<version>-<Algorithm> header; ValueError for a version it cannot carry."""
    if algorithm not in KNOWN_ALGORITHMS:
        raise ValueError(f"algorithm must be one of {', '.join(KNOWN_ALGORITHMS)}, got {algorithm!r}")
    header = CacheHeader(CacheFormat.TRT, algorithm, encode_version(trt_version))
    return CalibrationCache(header, {k: float(v) for k, v in scales.items()})
