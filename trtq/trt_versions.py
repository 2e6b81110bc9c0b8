"""TensorRT version numbers as a calibration cache header writes them (NV_TENSORRT_VERSION):
MAJOR*10000 + MINOR*100 + PATCH from TensorRT 10 on, MAJOR*1000 + MINOR*100 + PATCH before. A leaf
module: the config validates ``calibration.trt_version`` with it and the cache format writes it."""

from __future__ import annotations

import re

_VERSION = re.compile(r"^\d+(\.\d+){1,3}$")
"""major.minor, major.minor.patch or TensorRT's own major.minor.patch.build."""


def encode_version(version: str | int) -> int:
    """'10.16.1' -> 101601, '8.6.1' -> 8601 ('10.16' and '10.16.1.11' too); an int is taken as
    already encoded. ValueError for anything that is not a TensorRT version."""
    if isinstance(version, int):
        return version
    if not _VERSION.match(version):
        raise ValueError(f"'{version}' is not a TensorRT version like 10.16.1")
    major, minor, patch = [*map(int, version.split(".")), 0][:3]
    if minor > 99 or patch > 99:
        raise ValueError(f"'{version}': minor and patch must be 0..99 (the cache header has two digits each)")
    return major * (10000 if major >= 10 else 1000) + minor * 100 + patch


def decode_version(number: int) -> tuple[int, int, int]:
    major = number // 10000 if number >= 100000 else number // 1000
    rest = number - major * (10000 if number >= 100000 else 1000)
    return major, rest // 100, rest % 100


def version_name(version: str | int) -> str:
    """'10.16', '10.16.1.11' or 101600 -> major.minor.patch ('10.16.0'); ValueError as encode_version."""
    return ".".join(map(str, decode_version(encode_version(version))))
