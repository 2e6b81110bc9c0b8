"""TensorRT calibration cache format: real lines, version numbers, round trips, malformed input."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from trtq.cache import decode_version, encode_version, format_cache, parse_cache, read_cache, write_cache
from trtq.cache.trt_format import make_cache, open_cache
from trtq.errors import TrtqError

# Lines from public caches written by TensorRT (docs/tensorrt.md, section 2).
REAL_CACHE = """TRT-100900-EntropyCalibration2
images: 3c021406
/model/backbone/stem/stem1/conv/Conv_output_0: 3aec0f08
ONNXTRT_Broadcast_1855_output: 0
/encoder/Log_output_0: 7f800000
/encoder/Cast_2_output_0: 3f800000
input: 3e30f86c
"""


def test_reads_real_tensorrt_lines() -> None:
    cache = parse_cache(REAL_CACHE)
    assert cache.version == 100900
    assert cache.trt_version == "10.9.0"
    assert cache.algorithm == "EntropyCalibration2"
    assert cache.scales["images"] * 127 == pytest.approx(1.0083, abs=1e-4)
    assert cache.scales["ONNXTRT_Broadcast_1855_output"] == 0.0
    assert math.isinf(cache.scales["/encoder/Log_output_0"])
    assert cache.scales["/encoder/Cast_2_output_0"] == 1.0
    assert cache.scales["input"] * 127 == pytest.approx(21.95, abs=1e-2)


def test_written_text_is_byte_identical_to_tensorrts() -> None:
    cache = parse_cache(REAL_CACHE)
    assert format_cache(cache) == REAL_CACHE


def test_one_over_127_is_3c010204() -> None:
    cache = make_cache(
        {"/Cast_output_0": float(np.float32(1) / np.float32(127))}, "MinMaxCalibration", 101303
    )
    assert format_cache(cache) == "TRT-101303-MinMaxCalibration\n/Cast_output_0: 3c010204\n"


@pytest.mark.parametrize(
    ("version", "number"),
    [
        ("10.16.1", 101601),
        ("10.16.0", 101600),
        ("10.9.0", 100900),
        ("10.13.3", 101303),
        ("8.2.3", 8203),
        ("8.4.0", 8400),
        ("8.6.1", 8601),
    ],
)
def test_version_encoding(version: str, number: int) -> None:
    assert encode_version(version) == number
    assert ".".join(map(str, decode_version(number))) == version


def test_tensorflow_names_with_colons_survive() -> None:
    cache = parse_cache("TRT-8601-EntropyCalibration2\nconv1/Relu:0: 3c010204\n")
    assert list(cache.scales) == ["conv1/Relu:0"]


names = st.text(
    st.characters(
        blacklist_categories=("Cc", "Cs"), blacklist_characters="\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
    ),
    min_size=1,
    max_size=40,
).filter(lambda s: s.strip() == s and not s.startswith("TRT-"))
scales = st.floats(min_value=0, allow_nan=False, allow_infinity=True, width=32)


@given(
    st.dictionaries(names, scales, max_size=30),
    st.sampled_from(["EntropyCalibration2", "MinMaxCalibration"]),
    st.sampled_from(["10.16.1", "10.1.0", "8.6.1"]),
)
def test_round_trip(
    tmp_path_factory: pytest.TempPathFactory, table: dict[str, float], algorithm: str, version: str
) -> None:
    path = tmp_path_factory.mktemp("cache") / "model.cache"
    written = write_cache(path, table, algorithm=algorithm, trt_version=version)
    read = read_cache(path)
    assert read == written
    assert read.scales == table
    assert read.algorithm == algorithm and read.trt_version == version


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", ":1: empty calibration cache"),
        ("calibration\n", ":1: expected a header"),
        ("TRT-101601-EntropyCalibration2\nconv: zz\n", ":2: expected '<tensor name>: <hex float32>'"),
        ("TRT-101601-EntropyCalibration2\na: 3c010204\nb 3c010204\n", ":3: expected"),
        ("TRT-101601-EntropyCalibration2\na: 3c010204\n\na: 3c010204\n", ":4: tensor 'a' appears twice"),
        ("TRT-101601-EntropyCalibration2\na: ffc00000\n", ":2: tensor 'a' has an invalid scale"),
        ("TRT-101601-EntropyCalibration2\na: bf800000\n", ":2: tensor 'a' has an invalid scale"),
        ("TRT-101601-EntropyCalibration2\na: 123456789\n", ":2: expected"),
    ],
)
def test_malformed_cache_names_the_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.cache"
    path.write_text(text)
    with pytest.raises(TrtqError, match=str(path).replace(".", r"\.") + message.replace("(", r"\(")):
        read_cache(path)


def test_binary_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "engine.cache"
    path.write_bytes(b"TRT-101601-EntropyCalibration2\na: 0\n\xff\xfe")
    with pytest.raises(TrtqError, match=r":3: not a text calibration cache"):
        read_cache(path)


def test_interrupted_write_keeps_the_old_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "model.cache"
    write_cache(path, {"a": 0.5})
    original = path.read_bytes()

    def crash(*_: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        write_cache(path, {"a": 0.25, "b": 1.0})
    assert path.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.cache"]  # no temporary left behind


def test_rejects_values_tensorrt_cannot_store(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=">= 0"):
        write_cache(tmp_path / "x.cache", {"a": -1.0})
    with pytest.raises(ValueError, match="float32"):
        write_cache(tmp_path / "x.cache", {"a": 1e39})
    with pytest.raises(ValueError, match="algorithm"):
        write_cache(tmp_path / "x.cache", {"a": 1.0}, algorithm="Percentile")


def test_property_tests_run_without_wall_clock_limits() -> None:
    """The conftest profile: a slow example on a loaded machine must not fail the run."""
    from hypothesis import HealthCheck, settings

    assert settings.default.deadline is None
    assert HealthCheck.too_slow in settings.default.suppress_health_check


def test_the_cache_is_parsed_as_it_is_read(tmp_path: Path) -> None:
    """Rows come out before the rest of the file is read: nothing holds the whole text or its lines."""
    path = tmp_path / "model.cache"
    path.write_text("TRT-101601-EntropyCalibration2\na: 3c010204\nb: 3f800000\nbroken line\n")
    with open_cache(path) as (header, scales):
        assert (header.version, header.algorithm) == (101601, "EntropyCalibration2")
        assert next(scales) == ("a", pytest.approx(1 / 127))
        assert next(scales) == ("b", 1.0)
        with pytest.raises(TrtqError, match=re.escape(f"{path}:4: expected '<tensor name>: <hex float32>'")):
            next(scales)


def test_a_byte_order_mark_is_named(tmp_path: Path) -> None:
    # Editors on Windows add one; TensorRT compares the header's bytes and would reject the cache.
    path = tmp_path / "model.cache"
    path.write_bytes(b"\xef\xbb\xbfTRT-101601-EntropyCalibration2\na: 3c010204\n")
    expected = re.escape(f"{path}:1: the file starts with a UTF-8 byte-order mark")
    with pytest.raises(TrtqError, match=expected), open_cache(path) as (_, scales):
        next(scales)
