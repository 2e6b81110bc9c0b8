"""Contract tests: trtq's calibrators driven through TensorRT's documented calling protocol
(read_calibration_cache, get_batch until the end, write_calibration_cache) with a stand-in for the
TensorRT base classes and host memory in place of device memory."""

from __future__ import annotations

import ctypes
import hashlib
import importlib
import json
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import WriteConfig

from trtq.config import load_config
from trtq.errors import TrtqError
from trtq.resources import resolve_path

TRT_CACHE = b"TRT-101601-EntropyCalibration2\nx: 3c010204\nconv2d_0.tmp_0: 3d24b74f\n"


class _Base:
    """Stand-in for TensorRT 10's calibrator trampoline: the C++ side that calls the Python methods.

    The builder never calls a calibrator's Python methods itself; the pybind11 trampoline
    ``pyCalibratorTrampoline`` in NVIDIA/TensorRT ``python/src/infer/pyInt8.cpp`` (tag v10.16) does,
    and turns their results into what TensorRT sees. The ``trt_*`` methods apply its rules:

    - ``readCalibrationCache``: ``None`` becomes the null pointer (TensorRT calibrates); anything
      else is taken as a buffer (``py::buffer``) and handed to TensorRT as the cache, with
      length = size * itemsize, whatever that length is (``b""`` is a cache of 0 bytes). For a
      non-buffer the stand-in is stricter than the v10.16 trampoline: it raises TypeError, where
      the binding catches the cast's exception, prints it and lets TensorRT calibrate.
    - ``getBatch``: ``None`` or an empty list means "no more batches"; anything else is cast to
      a vector of integers (device addresses) and ``nbBindings`` of them are copied, one per name.
    - ``writeCalibrationCache``: the Python method receives a ``memoryview`` of the bytes.
    - The docs require the base ``__init__`` to be called explicitly (``base_initialised``).
    """

    def __init__(self) -> None:
        self.base_initialised = True

    def trt_read_calibration_cache(self) -> memoryview | None:
        result = self.read_calibration_cache()  # type: ignore[attr-defined]
        if result is None:
            return None
        return memoryview(result).cast("B")  # TypeError for anything that is not a buffer

    def trt_get_batch(self, names: list[str]) -> list[int] | None:
        result = self.get_batch(names)  # type: ignore[attr-defined]
        if result is None or len(result) == 0:
            return None
        assert all(isinstance(p, int) for p in result), "not castable to std::vector<size_t>"
        assert len(result) >= len(names), "TensorRT copies one pointer per name"
        return list(result[: len(names)])

    def trt_write_calibration_cache(self, data: bytes) -> None:
        self.write_calibration_cache(memoryview(data))  # type: ignore[attr-defined]


class HostMemory:
    """Host buffers posing as device memory: the 'device address' is a NumPy buffer's address."""

    def __init__(self) -> None:
        self.buffers: list[np.ndarray] = []

    def allocate(self, nbytes: int) -> int:
        self.buffers.append(np.zeros(nbytes, dtype=np.uint8))
        return int(self.buffers[-1].ctypes.data)

    def pinned_empty(self, shape: tuple[int, ...]) -> np.ndarray:
        return np.empty(shape, dtype=np.float32)

    def copy_to_device(self, address: int, host: np.ndarray) -> None:
        ctypes.memmove(address, host.ctypes.data, host.nbytes)


@pytest.fixture
def trt_modules(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    fake = types.ModuleType("tensorrt")
    fake.__version__ = "10.16.1.11"  # type: ignore[attr-defined]
    fake.IInt8EntropyCalibrator2 = type("IInt8EntropyCalibrator2", (_Base,), {})  # type: ignore[attr-defined]
    fake.IInt8MinMaxCalibrator = type("IInt8MinMaxCalibrator", (_Base,), {})  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    for name in ("trtq.trt.calibrators", "trtq.trt.version"):
        sys.modules.pop(name, None)
    calibrators = importlib.import_module("trtq.trt.calibrators")
    yield calibrators
    for name in ("trtq.trt.calibrators", "trtq.trt.version"):
        sys.modules.pop(name, None)


def feed_for(
    config_path: Path, algorithm: str = "entropy", trt_version: str = "10.16.1"
) -> tuple[object, list[str]]:
    from trtq.trt.feed import CalibrationFeed

    messages: list[str] = []
    feed = CalibrationFeed(
        load_config(config_path), HostMemory(), algorithm, trt_version, log=messages.append
    )  # type: ignore[arg-type]
    return feed, messages


def expected_batches(config_path: Path) -> list[np.ndarray]:
    """The classifier's preprocessing done by hand: BGR, stretched to 192x48, (x/255 - 0.5)/0.5, NCHW."""
    lines = (config_path.parent / "images.txt").read_text().split()
    images = [
        cv2.resize(cv2.imread(str(resolve_path(line, config_path.parent))), (192, 48)) for line in lines
    ]
    items = (np.stack(images).transpose(0, 3, 1, 2).astype(np.float32) / 255.0 - 0.5) / 0.5
    return [items[i : i + 2] for i in range(0, len(items) - 1, 2)]


def drive(calibrator: object, names: list[str]) -> tuple[bytes | None, list[bytes]]:
    """What TensorRT does: read the cache; if there is none, get_batch until it returns nothing.
    Returns the cache TensorRT was handed (None: it calibrated) and the batches it read."""
    cache = calibrator.trt_read_calibration_cache()  # type: ignore[attr-defined]
    if cache is not None:
        return bytes(cache), []
    seen = []
    nbytes = calibrator.feed.host.nbytes  # type: ignore[attr-defined]
    for _ in range(100):
        pointers = calibrator.trt_get_batch(names)  # type: ignore[attr-defined]
        if pointers is None:
            break
        seen.append(ctypes.string_at(pointers[0], nbytes))
    return None, seen


def test_batches_at_the_pointers_are_the_preprocessed_images(trt_modules, write_config: WriteConfig) -> None:
    config = write_config(n_images=5)
    feed, messages = feed_for(config)
    calibrator = trt_modules.make_calibrator(feed)
    assert type(calibrator).__name__ == "EntropyCalibrator2" and calibrator.base_initialised
    assert calibrator.get_batch_size() == 2
    cache, seen = drive(calibrator, ["x"])
    assert cache is None  # no cache file: TensorRT must be told "none", not handed an empty cache
    expected = expected_batches(config)
    assert len(seen) == len(expected) == 2  # 5 images, batch 2: the partial last batch is dropped
    for raw, batch in zip(seen, expected, strict=True):
        np.testing.assert_allclose(
            np.frombuffer(raw, dtype=np.float32).reshape(batch.shape), batch, atol=1e-6
        )
    assert len({id(b) for b in feed.memory.buffers}) == 1  # one device allocation, reused for every batch
    assert calibrator.get_batch(["x"]) == []  # stays at the end
    assert any("no calibration cache" in m for m in messages)
    feed.check()


def test_written_cache_is_reused_without_get_batch(trt_modules, write_config: WriteConfig) -> None:
    config = write_config(n_images=4)
    feed, _ = feed_for(config)
    calibrator = trt_modules.make_calibrator(feed)
    assert drive(calibrator, ["x"])[0] is None
    calibrator.trt_write_calibration_cache(TRT_CACHE)
    cache_path = load_config(config).cache_path
    assert cache_path.read_bytes() == TRT_CACHE
    manifest = cache_path.parent / "model.cache.manifest.json"
    assert json.loads(manifest.read_text())["scales_by"] == "TensorRT 10.16.1 (EntropyCalibration2)"

    fresh, messages = feed_for(config)
    reused = trt_modules.make_calibrator(fresh)
    assert drive(reused, ["x"]) == (TRT_CACHE, [])
    assert fresh.batches_served == 0 and fresh.cache_reused
    fresh.check()  # no batch consumed, but the cache was used: fine
    assert any("reusing calibration cache" in m for m in messages)


@pytest.mark.parametrize("change", ["images", "header"])
def test_stale_or_foreign_cache_is_refused_with_a_reason(
    trt_modules, write_config: WriteConfig, change: str
) -> None:
    config = write_config(n_images=4)
    feed, _ = feed_for(config)
    feed.write_cache(TRT_CACHE)
    algorithm = "entropy"
    if change == "images":
        images = config.parent / "images.txt"
        images.write_text("\n".join(images.read_text().split()[:3]) + "\n")
    else:
        algorithm = "minmax"
    fresh, messages = feed_for(config, algorithm)
    calibrator = trt_modules.make_calibrator(fresh)
    assert drive(calibrator, ["x"])[0] is None
    reason = {
        "images": "calibration images changed: 4 -> 3 images",
        "header": "cache header says EntropyCalibration2, this calibrator is MinMaxCalibration",
    }[change]
    assert any("recalibrating" in m and reason in m for m in messages), messages


def test_cache_for_another_tensorrt_version_is_fed_with_the_running_versions_header(
    trt_modules, write_config: WriteConfig
) -> None:
    """A version difference alone never refuses a cache: only the header line changes, in memory."""
    config = write_config(n_images=4)
    writer, _ = feed_for(config)
    writer.write_cache(TRT_CACHE)  # written by TensorRT 10.16.1
    cache_path = load_config(config).cache_path
    manifest_before = (cache_path.parent / "model.cache.manifest.json").read_bytes()

    fresh, messages = feed_for(config, trt_version="10.13.3")
    calibrator = trt_modules.make_calibrator(fresh)
    handed, batches = drive(calibrator, ["x"])
    assert batches == [] and fresh.cache_reused
    # 10.13.3 -> 10*10000 + 13*100 + 3 (NvInferRuntimeBase.h's NV_TENSORRT_VERSION for 10.x)
    assert handed == TRT_CACHE.replace(b"TRT-101601-", b"TRT-101303-")
    assert any("targets TensorRT 10.16.1" in m and "running TensorRT 10.13.3" in m for m in messages)
    # TensorRT may hand the cache back through writeCalibrationCache: the file keeps its provenance.
    calibrator.trt_write_calibration_cache(handed)
    assert cache_path.read_bytes() == TRT_CACHE
    assert (cache_path.parent / "model.cache.manifest.json").read_bytes() == manifest_before


def test_errors_inside_get_batch_are_counted_and_fail_the_build(
    trt_modules, write_config: WriteConfig
) -> None:
    config = write_config(n_images=4)
    images = config.parent / "images.txt"
    lines = images.read_text().split()
    images.write_text("\n".join([*lines[:2], "missing.png", *lines[2:]]) + "\n")
    feed, messages = feed_for(config)
    calibrator = trt_modules.make_calibrator(feed)
    _, seen = drive(calibrator, ["x"])
    assert len(seen) == 1  # the first batch, then the missing image ends calibration as TensorRT would
    assert len(feed.errors) == 1 and "image file not found" in feed.errors[0]
    assert any("ERROR in get_batch" in m and "Traceback" in m for m in messages)
    with pytest.raises(TrtqError, match="calibration failed inside TensorRT's callbacks"):
        feed.check()

    wrong, _ = feed_for(write_config(n_images=4, name="other.yaml"))
    assert trt_modules.make_calibrator(wrong).get_batch(["images"]) == []
    assert "only 'x'" in wrong.errors[0]


def test_zero_batches_is_an_error(trt_modules, write_config: WriteConfig) -> None:
    feed, _ = feed_for(write_config(n_images=4))
    trt_modules.make_calibrator(feed)
    with pytest.raises(TrtqError, match="consumed no batch"):
        feed.check()


def test_minmax_and_cpu_only_algorithms(trt_modules, write_config: WriteConfig) -> None:
    from typer.testing import CliRunner

    from trtq.cli.main import app

    config = write_config(n_images=4, algorithm="percentile")
    feed, _ = feed_for(config, "minmax")
    assert type(trt_modules.make_calibrator(feed)).__name__ == "MinMaxCalibrator"
    feed, _ = feed_for(config, "percentile")
    with pytest.raises(TrtqError, match="run `trtq calibrate` first"):
        trt_modules.make_calibrator(feed)
    assert CliRunner().invoke(app, ["calibrate", str(config)]).exit_code == 0
    feed, _ = feed_for(config, "percentile")
    calibrator = trt_modules.make_calibrator(feed)
    assert type(calibrator).__name__ == "EntropyCalibrator2"
    handed, _ = drive(calibrator, ["x"])
    assert handed is not None and handed.startswith(b"TRT-101601-EntropyCalibration2\n")
    assert calibrator.get_batch(["x"]) == [] and "cannot calibrate with 'percentile'" in feed.errors[0]
    # The headline workflow: calibrated on a CPU for 10.16.1, built where another TensorRT runs.
    feed, _ = feed_for(config, "percentile", trt_version="10.13.3")
    handed, batches = drive(trt_modules.make_calibrator(feed), ["x"])
    assert handed is not None and handed.startswith(b"TRT-101303-EntropyCalibration2\n") and not batches


def test_cache_tensorrt_discards_is_replaced_by_the_recalibrated_one(
    trt_modules, write_config: WriteConfig
) -> None:
    """TensorRT may reject a cache it was handed (header or version) and calibrate after all: the
    cache it then writes is new and must replace the file, with a manifest for it."""
    config = write_config(n_images=4)
    writer, _ = feed_for(config)
    writer.write_cache(TRT_CACHE)
    cache_path = load_config(config).cache_path
    manifest_path = cache_path.parent / "model.cache.manifest.json"

    feed, messages = feed_for(config, trt_version="10.13.3")
    calibrator = trt_modules.make_calibrator(feed)
    assert calibrator.trt_read_calibration_cache() is not None and feed.cache_reused
    served = 0
    while calibrator.trt_get_batch(["x"]) is not None:  # TensorRT discarded it: it calibrates
        served += 1
    assert served == 2 and not feed.cache_reused
    assert any("TensorRT discarded the cache" in m for m in messages)
    recalibrated = b"TRT-101303-EntropyCalibration2\nx: 3c000000\nconv2d_0.tmp_0: 3d000000\n"
    calibrator.trt_write_calibration_cache(recalibrated)
    assert cache_path.read_bytes() == recalibrated
    manifest = json.loads(manifest_path.read_text())
    assert manifest["cache_sha256"] == hashlib.sha256(recalibrated).hexdigest()
    assert manifest["scales_by"] == "TensorRT 10.13.3 (EntropyCalibration2)"
    feed.check()
