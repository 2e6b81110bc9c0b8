"""The cache version policy: a TensorRT version difference rewrites the header, never the verdict.

Headers are checked against NV_TENSORRT_VERSION's formula (MAJOR*10000 + MINOR*100 + PATCH from
TensorRT 10, MAJOR*1000 + ... before; NvInferRuntimeBase.h), worked out by hand below.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from conftest import WriteConfig
from test_trt_calibrators import TRT_CACHE, HostMemory
from typer.testing import CliRunner

from trtq.cache.retarget import retarget_bytes
from trtq.cli.main import app
from trtq.config import load_config
from trtq.errors import TrtqError

# Lines of a public cache TensorRT 10.9.0 wrote (DEIMKit), with its irregular hex widths.
REAL = b"TRT-100900-EntropyCalibration2\nimages: 3c021406\nONNXTRT_Broadcast_1855_output: 0\n"


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, re.sub(r"\s+", " ", result.output)


def manifest_of(cache: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads(cache.with_name(cache.name + ".manifest.json").read_text())
    return data


@pytest.mark.parametrize(
    ("version", "header"), [("10.13.3", "TRT-101303-"), ("10.16", "TRT-101600-"), ("8.6.1", "TRT-8601-")]
)
def test_retarget_rewrites_only_the_header(version: str, header: str) -> None:
    assert retarget_bytes(REAL, version) == REAL.replace(b"TRT-100900-", header.encode())
    crlf = REAL.replace(b"\n", b"\r\n")
    assert retarget_bytes(crlf, version) == crlf.replace(b"TRT-100900-", header.encode())
    with pytest.raises(TrtqError, match="'ten' is not a TensorRT version"):
        retarget_bytes(REAL, "ten")


def test_cli_retarget_in_place_keeps_the_manifest_consistent(write_config: WriteConfig) -> None:
    config = write_config(n_images=4)
    assert invoke("calibrate", str(config))[0] == 0
    cache = load_config(config).cache_path
    before = cache.read_text()
    scales_by = manifest_of(cache)["scales_by"]
    assert isinstance(scales_by, str) and scales_by.startswith("trtq ")

    code, output = invoke("cache", "retarget", str(cache), "--trt-version", "10.200.1")
    assert code == 1 and "--trt-version: '10.200.1': minor and patch must be 0..99" in output, output
    code, output = invoke("cache", "retarget", str(cache), "--trt-version", "10.13.3")
    assert code == 0, output
    assert "TensorRT 10.16.1 -> 10.13.3" in output
    assert cache.read_text() == before.replace("TRT-101601-", "TRT-101303-", 1)
    manifest = manifest_of(cache)
    assert manifest["cache_sha256"] == hashlib.sha256(cache.read_bytes()).hexdigest()
    assert manifest["trt_version"] == "10.13.3" and manifest["scales_by"] == scales_by

    # The config still targets 10.16.1: the version digit alone does not make the cache stale.
    code, output = invoke("cache", "check", str(config), "--cache", str(cache))
    assert code == 0, output
    assert "up to date" in output
    assert "header targets TensorRT 10.13.3, the config TensorRT 10.16.1" in output


def test_cli_retarget_to_another_file_and_refusals(write_config: WriteConfig, tmp_path: Path) -> None:
    config = write_config(n_images=4)
    assert invoke("calibrate", str(config))[0] == 0
    cache = load_config(config).cache_path
    original = cache.read_bytes()
    out = tmp_path / "for-10.13.cache"
    code, output = invoke("cache", "retarget", str(cache), "--trt-version", "10.13.3", "-o", str(out))
    assert code == 0, output
    assert cache.read_bytes() == original  # the input is never touched
    assert out.read_bytes() == original.replace(b"TRT-101601-", b"TRT-101303-", 1)
    assert manifest_of(out)["cache_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()

    manifest = cache.with_name(cache.name + ".manifest.json")
    code, output = invoke("cache", "retarget", str(cache), "--trt-version", "10.13.3", "-o", str(manifest))
    assert code == 1 and "is the manifest of" in output
    same = cache.parent / ".." / cache.parent.name / cache.name  # CACHE itself, spelt differently
    assert invoke("cache", "retarget", str(cache), "--trt-version", "10.14.1", "-o", str(same))[0] == 0
    assert cache.read_bytes().startswith(b"TRT-101401-")

    cache.write_text(re.sub(r"(?m)^x: \w+$", "x: 3f800000", cache.read_text()))  # a valid, edited scale
    code, output = invoke("cache", "retarget", str(cache), "--trt-version", "10.16.1")
    assert code == 1 and "modified after its manifest was written" in output


def test_check_accepts_a_tensorrt_written_cache_for_another_version(write_config: WriteConfig) -> None:
    """The mirror case: TensorRT 10.13.3 wrote the cache, the config says 10.16.1."""
    from trtq.trt.feed import CalibrationFeed

    config = write_config(n_images=4)
    cache_written_by_trt = TRT_CACHE.replace(b"TRT-101601-", b"TRT-101303-")
    feed = CalibrationFeed(load_config(config), HostMemory(), "entropy", "10.13.3", log=lambda _: None)
    feed.write_cache(cache_written_by_trt)
    cache = load_config(config).cache_path
    assert manifest_of(cache)["scales_by"] == "TensorRT 10.13.3 (EntropyCalibration2)"
    code, output = invoke("cache", "check", str(config), "--cache", str(cache))
    assert code == 0, output
    assert "header targets TensorRT 10.13.3, the config TensorRT 10.16.1" in output


def test_cli_retarget_of_a_cache_without_manifest_removes_a_stale_one_at_the_output(
    write_config: WriteConfig, tmp_path: Path
) -> None:
    """-o OUT's old manifest vouched for the file being replaced: it must not survive beside the new one."""
    config = write_config(n_images=4)
    assert invoke("calibrate", str(config))[0] == 0
    cache = load_config(config).cache_path
    out = tmp_path / "for-10.13.cache"
    assert invoke("cache", "retarget", str(cache), "--trt-version", "10.13.3", "-o", str(out))[0] == 0
    stale = out.with_name(out.name + ".manifest.json")
    assert stale.is_file()

    bare = tmp_path / "bare.cache"
    bare.write_bytes(REAL)  # TensorRT's cache, no manifest: provenance unknown
    code, output = invoke("cache", "retarget", str(bare), "--trt-version", "10.13.3", "-o", str(out))
    assert code == 0, output
    assert out.read_bytes() == REAL.replace(b"TRT-100900-", b"TRT-101303-")
    assert not stale.exists()
    assert "no manifest (provenance unknown)" in output
    assert "; removed " in output and "which described the file replaced" in output  # (rich wraps the path)
    code, output = invoke("cache", "check", str(config), "--cache", str(out))
    assert code == 1 and "manifest" in output  # not "up to date" on the strength of a stale manifest


@pytest.mark.parametrize("version", ["ten", "10", "10.-1", "10.16.1.11.2", ""])
def test_versions_that_are_not_tensorrt_versions_are_refused(version: str) -> None:
    with pytest.raises(TrtqError, match=r"is not a TensorRT version like 10\.16\.1"):
        retarget_bytes(REAL, version)


def test_tensorrt_build_numbers_are_accepted_and_dropped() -> None:
    """trt.__version__ carries a fourth, build number (10.16.1.11): the header has no room for it."""
    assert retarget_bytes(REAL, "10.16.1.11").startswith(b"TRT-101601-EntropyCalibration2\n")
