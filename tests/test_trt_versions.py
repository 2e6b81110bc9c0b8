"""calibration.trt_version: trtq writes no cache header it cannot read back as the same version.

Worked out by hand: before TensorRT 10 the header's number is MAJOR*1000 + MINOR*100 + PATCH, so
8.10.0 would be 9000, which is 9.0.0; from 10 on MAJOR*10000 + MINOR*100 + PATCH (NvInferRuntimeBase.h).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from trtq.cache.trt_format import parse_header, read_cache, write_cache
from trtq.config import load_config
from trtq.config.schema import CalibrationSection
from trtq.errors import TrtqError
from trtq.trt_versions import decode_version, encode_version, version_name

CONFIG = """\
model:
  path: model.onnx
inputs:
  - name: x
    shape: [1, 3, 224, 224]
calibration:
  images: images.txt
  cache: out/model.cache
  trt_version: '{version}'
"""


@pytest.mark.parametrize(
    ("version", "reason"),
    [
        ("0.0", "the major version must be 1..99"),
        ("100.1", "the major version must be 1..99"),
        ("8.10.0", "before TensorRT 10 the minor must be 0..9 .* would be 9000, which is 9.0.0"),
        ("9.10", "before TensorRT 10 the minor must be 0..9 .* would be 10000, no TensorRT version"),
        ("10.100.0", "minor and patch must be 0..99"),
        ("8.6.100", "minor and patch must be 0..99"),
        ("10", "is not a TensorRT version like 10.16.1"),
    ],
)
def test_config_refuses_versions_a_header_cannot_carry(tmp_path: Path, version: str, reason: str) -> None:
    path = tmp_path / "model.yaml"
    path.write_text(CONFIG.format(version=version))
    with pytest.raises(TrtqError, match=rf"model.yaml:9: calibration.trt_version: '{version}': .*{reason}"):
        load_config(path)


@given(st.integers(0, 120), st.integers(0, 120), st.integers(0, 120))
def test_every_version_the_config_accepts_is_read_back_unchanged(
    tmp_path_factory: pytest.TempPathFactory, major: int, minor: int, patch: int
) -> None:
    version = f"{major}.{minor}.{patch}"
    try:
        CalibrationSection(trt_version=version)
    except ValidationError:
        with pytest.raises(ValueError):
            encode_version(version)
        return
    path = tmp_path_factory.mktemp("cache") / "model.cache"
    write_cache(path, {"x": 0.5}, trt_version=version)
    assert read_cache(path).trt_version == version


@given(st.integers(0, 1_200_000))
def test_a_header_number_is_read_exactly_when_it_names_one_version(number: int) -> None:
    try:
        decoded = decode_version(number)
    except ValueError:
        with pytest.raises(TrtqError, match=f"{number} is not a TensorRT version number"):
            parse_header(f"TRT-{number}-EntropyCalibration2")
        return
    assert parse_header(f"TRT-{number}-EntropyCalibration2").version == number
    assert encode_version(version_name(number)) == number
    assert version_name(number) == ".".join(map(str, decoded))
