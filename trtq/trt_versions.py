"""TensorRT versions and the number a calibration cache header writes for them.

NV_TENSORRT_VERSION is MAJOR*1000 + MINOR*100 + PATCH before TensorRT 10 and MAJOR*10000 + MINOR*100
+ PATCH from 10 on (NvInferRuntimeBase.h). Only versions whose number decodes back to them may be
written: before 10 the minor has one digit (8.10.0 would be 9000, which is 9.0.0), from 10 on two;
the patch has two digits. A leaf module: the config schema and the cache format share this rule.
"""

from __future__ import annotations

import re

_VERSION = re.compile(r"^\d+(\.\d+){1,3}$")
"""major.minor, major.minor.patch or TensorRT's own major.minor.patch.build."""


def encode_version(version: str | int) -> int:
    """'10.16.1' -> 101601, '8.6.1' -> 8601 ('10.16' and '10.16.1.11' too); an int must already be
    a header number. ValueError for anything a cache header cannot carry and give back."""
    if isinstance(version, int):
        decode_version(version)
        return version
    if not _VERSION.match(version):
        raise ValueError(f"'{version}' is not a TensorRT version like 10.16.1")
    major, minor, patch = [*map(int, version.split(".")), 0][:3]
    if not 1 <= major <= 99:
        raise ValueError(f"'{version}': the major version must be 1..99 (TensorRT 1 to 99)")
    if major < 10 and minor > 9:
        raise ValueError(
            f"'{version}': before TensorRT 10 the minor must be 0..9 ({_collision(major, minor, patch)})"
        )
    if minor > 99 or patch > 99:
        raise ValueError(f"'{version}': minor and patch must be 0..99 (the cache header has two digits each)")
    return major * (10000 if major >= 10 else 1000) + minor * 100 + patch


def _collision(major: int, minor: int, patch: int) -> str:
    number = major * 1000 + minor * 100 + patch
    try:
        return (
            f"the header's MAJOR*1000 + MINOR*100 + PATCH would be {number}, which is {version_name(number)}"
        )
    except ValueError:
        return f"the header's MAJOR*1000 + MINOR*100 + PATCH would be {number}, no TensorRT version's number"


def decode_version(number: int) -> tuple[int, int, int]:
    """101601 -> (10, 16, 1), 8601 -> (8, 6, 1); ValueError for a number no TensorRT writes
    (4-digit before TensorRT 10, 6-digit from 10 on)."""
    if 1000 <= number <= 9999:
        return number // 1000, number % 1000 // 100, number % 100
    if 100000 <= number <= 999999:
        return number // 10000, number % 10000 // 100, number % 100
    raise ValueError(f"{number} is not a TensorRT version number (101601 is 10.16.1, 8601 is 8.6.1)")


def version_name(version: str | int) -> str:
    """'10.16', '10.16.1.11' or 101600 -> major.minor.patch ('10.16.0'); ValueError as encode_version."""
    return ".".join(map(str, decode_version(encode_version(version))))
