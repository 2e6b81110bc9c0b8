"""Every header TensorRT has written, from caches these tests write by hand, LF and CRLF.

The values are worked out by hand: float32 0x3f800000 = 1.0 (exponent 127, mantissa 0),
0x3f000000 = 0.5, 0x40000000 = 2.0, 0x3e800000 = 0.25, 0 = 0.0, 0x7f800000 = inf; float64
0x3ff0000000000000 = 1.0 (exponent 1023, mantissa 0) and 0x3fefff2e48e8a71e = 0.9999 (the double
nearest it), the legacy calibrator's regression cutoff and quantile in that order (a public cache
TensorRT 8.2 wrote for a calibrator whose get_quantile returns 0.9999 and get_regression_cutoff 1.0).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import WriteConfig, hand_made_minmax_cache, listed_photos
from typer.testing import CliRunner

from trtq.cache.retarget import retarget_bytes
from trtq.cache.trt_format import CacheFormat, NotATensorRTCache, parse_cache, read_cache
from trtq.cli.main import app
from trtq.errors import TrtqError

SCALE_LINES = (
    "input: 3f800000\n"
    "conv1/Relu:0: 3f000000\n"  # TensorFlow names keep their own colon
    "(Unnamed ITensor* 7): 40000000\n"
    "ONNXTRT_Broadcast_1855_output: 0\n"
    "/encoder/Log_output_0: 7f800000\n"
    "41: 3e800000\n"
)
SCALES = {
    "input": 1.0,
    "conv1/Relu:0": 0.5,
    "(Unnamed ITensor* 7)": 2.0,
    "ONNXTRT_Broadcast_1855_output": 0.0,
    "/encoder/Log_output_0": math.inf,
    "41": 0.25,
}


@dataclass(frozen=True)
class Header:
    line: str
    format: CacheFormat
    algorithm: str
    trt_version: str | None
    settings: tuple[float, float] | None = None
    """The legacy calibrator's (regression cutoff, quantile)."""


HEADERS = {
    "TensorRT 10": Header(
        "TRT-101601-EntropyCalibration2", CacheFormat.TRT, "EntropyCalibration2", "10.16.1"
    ),
    "TensorRT 10.0.1 minmax": Header(
        "TRT-100001-MinMaxCalibration", CacheFormat.TRT, "MinMaxCalibration", "10.0.1"
    ),
    "TensorRT 8": Header("TRT-8601-EntropyCalibration2", CacheFormat.TRT, "EntropyCalibration2", "8.6.1"),
    "TensorRT 7": Header("TRT-7103-EntropyCalibration2", CacheFormat.TRT, "EntropyCalibration2", "7.1.3"),
    "TensorRT 5.1": Header("TRT-5101-EntropyCalibration2", CacheFormat.TRT, "EntropyCalibration2", "5.1.1"),
    "TensorRT 4": Header("1", CacheFormat.TENSORRT4, "EntropyCalibration", None),
    "legacy calibrator": Header(
        "0 3ff0000000000000 3fefff2e48e8a71e", CacheFormat.LEGACY, "LegacyCalibration", None, (1.0, 0.9999)
    ),
}
ENDINGS = {"LF": "\n", "CRLF": "\r\n"}
ONNXRUNTIME_TABLE = "/conv1/Conv_output_0 14.0\n/relu/Relu_output_0 6.0\nimages 2.5\n"
"""ONNX Runtime's write_calibration_table: name, space, amax in decimal; sorted, no header."""


def cache_bytes(header: Header, ending: str) -> bytes:
    return (header.line + "\n" + SCALE_LINES).replace("\n", ending).encode()


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


@pytest.mark.parametrize("ending", ENDINGS)
@pytest.mark.parametrize("kind", HEADERS)
def test_every_header_is_read_with_its_scales_in_file_order(tmp_path: Path, kind: str, ending: str) -> None:
    expected = HEADERS[kind]
    path = tmp_path / "model.cache"
    path.write_bytes(cache_bytes(expected, ENDINGS[ending]))
    for cache in (read_cache(path), parse_cache(path.read_bytes())):
        assert cache.header.format is expected.format
        assert cache.algorithm == expected.algorithm
        assert cache.trt_version == expected.trt_version
        assert (cache.version is None) == (expected.trt_version is None)  # no made-up number
        settings = cache.header.regression_cutoff, cache.header.quantile
        assert settings == (expected.settings or (None, None))
        assert list(cache.scales.items()) == list(SCALES.items())


@pytest.mark.parametrize("kind", HEADERS)
def test_inspect_names_the_format_and_counts_every_tensor(tmp_path: Path, kind: str) -> None:
    header = HEADERS[kind]
    path = tmp_path / "model.cache"
    path.write_bytes(cache_bytes(header, "\r\n"))
    code, output = invoke("cache", "inspect", str(path))
    assert code == 0, output
    first = output.splitlines()[0]
    assert first.startswith(f"{path}: ")
    if header.trt_version is None:
        assert header.format.value in first and "no TensorRT version in the header" in first
    else:
        assert f"TensorRT {header.trt_version} ({header.line.split('-')[1]}), {header.algorithm}" in first
    if header.settings is not None:
        assert "regression cutoff 1.0, quantile 0.9999" in first
    assert "6 tensors\n" in output
    assert [line.split()[-1] for line in output.splitlines()[2:8]] == [n.split()[-1] for n in SCALES]


@pytest.mark.parametrize("kind", [k for k, h in HEADERS.items() if h.trt_version is None])
def test_retarget_refuses_headers_without_a_version_and_leaves_the_file(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "model.cache"
    data = cache_bytes(HEADERS[kind], "\n")
    path.write_bytes(data)
    code, output = invoke("cache", "retarget", str(path), "--trt-version", "10.16.1")
    assert code == 1
    assert f"cannot retarget {HEADERS[kind].format.value}: the header names no TensorRT version" in output
    assert path.read_bytes() == data
    with pytest.raises(TrtqError, match="names no TensorRT version"):
        retarget_bytes(data, "10.16.1")


@pytest.mark.parametrize("ending", ENDINGS)
@pytest.mark.parametrize("kind", [k for k, h in HEADERS.items() if h.trt_version is not None])
def test_retarget_keeps_every_scale_line_byte_for_byte(tmp_path: Path, kind: str, ending: str) -> None:
    path = tmp_path / "model.cache"
    data = cache_bytes(HEADERS[kind], ENDINGS[ending]) + b"\n" + b"late: 3f800000"  # blank, no final end
    path.write_bytes(data)
    code, output = invoke("cache", "retarget", str(path), "--trt-version", "10.13.3")
    assert code == 0, output
    written = path.read_bytes()
    assert (
        written.split(b"\n")[0]
        == b"TRT-101303-" + HEADERS[kind].algorithm.encode() + ENDINGS[ending][:-1].encode()
    )
    assert written.split(b"\n")[1:] == data.split(b"\n")[1:]


@pytest.mark.parametrize(
    "command",
    [
        ["cache", "inspect", "{cache}"],
        ["cache", "retarget", "{cache}", "--trt-version", "10.16.1"],
        ["crosscheck", "{config}", "--cache", "{cache}"],
        ["qdq", "{config}", "--cache", "{cache}", "-o", "{out}"],
    ],
)
def test_onnxruntime_table_is_named_by_every_command(tmp_path: Path, command: list[str]) -> None:
    cache = tmp_path / "calibration.cache"
    cache.write_text(ONNXRUNTIME_TABLE)
    config = tmp_path / "model.yaml"
    config.write_text(
        "model: {path: 'pkg:rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx'}\n"
        "inputs: [{name: x, shape: [2, 3, 48, 192]}]\npreprocess: {color: bgr}\n"
        "calibration: {images: images.txt, cache: model.cache}\n"
    )
    (tmp_path / "images.txt").write_text("\n".join(listed_photos(2)) + "\n")
    paths = {"cache": str(cache), "config": str(config), "out": str(tmp_path / "x.qdq.onnx")}
    code, output = invoke(*[arg.format(**paths) for arg in command])
    assert code == 1
    assert f"{cache}:1: this is ONNX Runtime's calibration table" in output
    assert "not a TensorRT calibration cache" in output
    assert cache.read_text() == ONNXRUNTIME_TABLE
    with pytest.raises(NotATensorRTCache):
        parse_cache(ONNXRUNTIME_TABLE)


@pytest.mark.parametrize("ending", ENDINGS)
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("calibration{end}", ":1: expected a header like 'TRT-101601-EntropyCalibration2'"),
        ("TRT-10001-EntropyCalibration2{end}", ":1: 10001 is not a TensorRT version number"),
        ("TRT-101601-Percentile{end}", ":1: unknown calibrator 'Percentile'"),
        (
            "0 3ff0000000000000 4000000000000000{end}",
            ":1: the legacy calibrator's quantile 4000000000000000 is 2.0",
        ),
        ("2{end}", ":1: expected a header"),
        ("TRT-101601-EntropyCalibration2{end}a 3c010204{end}", ":2: expected '<tensor name>: <hex float32>'"),
        ("TRT-101601-EntropyCalibration2{end}a: 1{end}a: 2{end}", ":3: tensor 'a' appears twice"),
    ],
)
def test_messages_quote_the_line_without_its_line_end(
    tmp_path: Path, ending: str, text: str, message: str
) -> None:
    path = tmp_path / "bad.cache"
    path.write_bytes(text.format(end=ENDINGS[ending]).encode())
    with pytest.raises(TrtqError) as info:
        read_cache(path)
    assert str(info.value).startswith(f"{path}{message}")
    assert "\\r" not in str(info.value) and "\\n" not in str(info.value)
    assert "\r" not in str(info.value) and "\n" not in str(info.value)


def test_a_long_header_is_quoted_cut_short(tmp_path: Path) -> None:
    path = tmp_path / "engine.cache"
    path.write_bytes(b"x" * 5000 + b"\n")
    with pytest.raises(TrtqError, match=re.escape(f"got '{'x' * 120}'...")) as info:
        read_cache(path)
    assert len(str(info.value)) < 400


@pytest.mark.parametrize("kind", [k for k, h in HEADERS.items() if h.trt_version is None])
def test_crosscheck_and_qdq_read_the_headers_without_a_version(write_config: WriteConfig, kind: str) -> None:
    config = write_config(n_images=2)
    made = hand_made_minmax_cache(config.parent, 2, {})  # max |x| / 127 by hand, under a TRT- header
    cache = config.parent / "old.cache"
    cache.write_bytes(HEADERS[kind].line.encode() + b"\r\n" + made.read_bytes().split(b"\n", 1)[1])
    code, output = invoke("crosscheck", str(config), "--cache", str(cache))
    assert code == 1 and f"{HEADERS[kind].algorithm!r} has no NumPy counterpart; pass --algorithm" in output

    out = config.parent / "check.json"
    code, output = invoke(
        "crosscheck", str(config), "--cache", str(cache), "--algorithm", "minmax", "--json", str(out)
    )
    assert code == 0, output
    ratios = [t["ratio"] for t in json.loads(out.read_text())["tensors"]]
    assert ratios and ratios == pytest.approx([1.0] * len(ratios), rel=1e-5)

    qdq = config.parent / "model.qdq.onnx"
    code, output = invoke("qdq", str(config), "--cache", str(cache), "-o", str(qdq))
    assert code == 0, output
    assert json.loads(qdq.with_name(qdq.name + ".json").read_text())["quantized_activations"] > 0


def test_check_says_a_versionless_header_names_no_version(write_config: WriteConfig) -> None:
    """Not "targets TensorRT None": a manifest may vouch for a cache whose header has no version."""
    config = write_config(n_images=2)
    assert invoke("calibrate", str(config))[0] == 0
    cache = config.parent / "out" / "model.cache"
    cache.write_bytes(b"1\n" + cache.read_bytes().split(b"\n", 1)[1])
    manifest = cache.with_name(cache.name + ".manifest.json")
    data = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**data, "cache_sha256": hashlib.sha256(cache.read_bytes()).hexdigest()}))
    code, output = invoke("cache", "check", str(config), "--cache", str(cache))
    assert code == 0, output
    assert f"note: {cache} is in TensorRT 4's format (header '1'), which names no TensorRT version" in output
