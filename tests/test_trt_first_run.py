"""The GPU-path defects a first GPU session would have hit, each on the stand-in TensorRT of
trt_fake.py (its rules are the bindings', see its docstring): what TensorRT reports instead of
raising is checked, and what trtq cannot feed is refused with the tensor's name."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trt_fake

from trtq.doctor.checks import build_engine
from trtq.doctor.tiny import TinyWorkspace
from trtq.errors import TrtqError
from trtq.fileio import atomic_write_bytes
from trtq.qdq.scales import cache_scales, qdq_from_scales


@pytest.fixture
def ws(tmp_path: Path) -> TinyWorkspace:
    return TinyWorkspace(tmp_path / "tiny")


def qdq_model(ws: TinyWorkspace) -> Path:
    from trtq.calibrate.pipeline import calibrate

    source = ws.config("source", "int8")
    calibrate(source)
    path = ws.folder / "tiny.qdq.onnx"
    atomic_write_bytes(path, qdq_from_scales(source, cache_scales(source, None)[1]).model.SerializeToString())
    return path


def test_int8_build_of_a_qdq_model_attaches_no_calibrator(
    ws: TinyWorkspace, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """TensorRT quantizes a network with Q/DQ layers explicitly and never calls the calibrator, so
    the feed's "consumed no batch" check must not run (Polygraphy attaches none there)."""
    model = qdq_model(ws)
    trt_fake.install(monkeypatch)
    builder = importlib.import_module("trtq.trt.builder")
    config = ws.config("int8-on-qdq", "int8", model={"path": model.name})
    report = json.loads(builder.build(config, force=True).report.read_text())
    assert report["calibration"] is None and report["precision"] == "int8"
    assert f"{model} has Q/DQ nodes" in capsys.readouterr().err


@pytest.mark.parametrize("call", ["add_optimization_profile", "set_calibration_profile"])
def test_a_profile_tensorrt_rejects_is_an_error_naming_the_shapes(
    ws: TinyWorkspace, monkeypatch: pytest.MonkeyPatch, call: str
) -> None:
    """add_optimization_profile returns -1 and set_calibration_profile False; neither raises."""
    trt_fake.install(monkeypatch)
    rejected = {"add_optimization_profile": -1, "set_calibration_profile": False}[call]
    monkeypatch.setattr(trt_fake.BuilderConfig, call, lambda self, profile: rejected)
    builder = importlib.import_module("trtq.trt.builder")
    with pytest.raises(TrtqError) as error:
        builder.build(ws.config("int8", "int8"), force=True)
    message = str(error.value)
    assert "TensorRT rejected the" in message
    if call == "add_optimization_profile":
        assert "'x' min [1, 3, 16, 16] opt [2, 3, 16, 16] max [4, 3, 16, 16]" in message
        # what the binding documents -1 for (pyCoreDoc: the profile must satisfy bool(profile) ==
        # True, IOptimizationProfile::isValid's partial check); input names are checked at build
        assert "bool(profile)" in message and "min, opt and max" in message
        assert "not checked here" in message and "when the engine is built" in message
    else:
        assert "'x' [2, 3, 16, 16]" in message


def test_an_engine_that_does_not_load_back_is_an_error_and_is_not_written(
    ws: TinyWorkspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """deserialize_cuda_engine returns None for bytes it cannot load (pyCore.cpp returns the pointer)."""
    trt_fake.install(monkeypatch)
    monkeypatch.setattr(trt_fake.Builder, "build_serialized_network", lambda self, network, config: b"junk")
    builder = importlib.import_module("trtq.trt.builder")
    config = ws.config("fp32", "fp32")
    with pytest.raises(TrtqError, match=r"built fp32\.engine but cannot load it back .*magic tag"):
        builder.build(config, force=True)
    assert not (ws.folder / "fp32.engine").exists()


def backend(ws: TinyWorkspace, monkeypatch: pytest.MonkeyPatch, **engine: Any) -> Any:
    """A TensorRTBackend over the tiny fp32 engine, the stand-in engine's attributes updated first."""
    trt_fake.install(monkeypatch)
    build_engine(ws, "fp32", "fp32")
    load = trt_fake.Runtime.deserialize_cuda_engine

    def deserialize(self: Any, data: bytes) -> Any:
        loaded = load(self, data)
        for key, value in engine.items():
            getattr(loaded, key).update(value)
        return loaded

    monkeypatch.setattr(trt_fake.Runtime, "deserialize_cuda_engine", deserialize)
    runner = importlib.import_module("trtq.trt.runner")
    from trtq.trt.builder import engine_path

    config = ws.configs["fp32"]
    return runner.TensorRTBackend(engine_path(config), config, cuda_graph=True, spin_wait=False)


@pytest.mark.parametrize(("tensor", "dtype"), [("x", "INT8"), ("y", "UINT8")])
def test_quantized_engine_io_is_refused_by_name(
    ws: TinyWorkspace, monkeypatch: pytest.MonkeyPatch, tensor: str, dtype: str
) -> None:
    with pytest.raises(TrtqError, match=rf"tensor '{tensor}' is {dtype}: trtq bench and compare feed"):
        backend(ws, monkeypatch, dtypes={tensor: getattr(trt_fake.DataType, dtype)})


def test_data_dependent_output_shape_is_refused_by_name(
    ws: TinyWorkspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(TrtqError, match=r"tensor 'y' has the data-dependent shape \[-1, 4\]"):
        backend(ws, monkeypatch, output_shapes={"y": [-1, 4]})


def test_a_refused_tensor_address_is_an_error(ws: TinyWorkspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """setTensorAddress returns false for a pointer without 256-byte alignment (NvInfer.h)."""
    monkeypatch.setattr(trt_fake.DeviceAllocation, "__int__", lambda self: self.address + 4)
    with pytest.raises(TrtqError, match="TensorRT refused the device address for tensor 'x'"):
        backend(ws, monkeypatch)


def test_without_libcudart_bench_falls_back_to_plain_enqueues(
    ws: TinyWorkspace, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    trt_fake.install(monkeypatch, cudart=False)
    build_engine(ws, "fp32", "fp32")
    runner = importlib.import_module("trtq.trt.runner")
    from trtq.runner.timing import TimingSettings, run_timed
    from trtq.trt.builder import engine_path

    config = ws.configs["fp32"]
    bench = runner.TensorRTBackend(engine_path(config), config, cuda_graph=True, spin_wait=False)
    assert not bench.uses_cuda_graph
    assert "CUDA graphs need the CUDA 12 or 13 runtime" in bench.warnings[0]
    assert "timing plain enqueues instead" in capsys.readouterr().err
    assert len(run_timed(bench, TimingSettings(warmup_ms=0, duration_s=0, iterations=3)).queries) == 3


def test_gpu_name_is_the_device_of_pycudas_primary_context(monkeypatch: pytest.MonkeyPatch) -> None:
    """pycuda.autoprimaryctx retains the primary context of CUDA_DEVICE's device, not of device 0."""
    monkeypatch.setenv("CUDA_DEVICE", "1")
    trt_fake.install(monkeypatch)
    from trtq.trt.device import gpu_name

    assert gpu_name() == trt_fake.GPUS[1]


def test_an_unreadable_cache_fails_the_build_instead_of_a_silent_recalibration(
    ws: TinyWorkspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trampoline turns an exception in read_calibration_cache into "no cache": TensorRT would
    calibrate and the new cache replace one that only could not be read this time."""
    trt_fake.install(monkeypatch)
    build_engine(ws, "int8", "int8")
    cache = ws.configs["int8"].cache_path
    written = cache.read_bytes()
    feed = importlib.import_module("trtq.trt.feed")

    def unreadable(*args: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(feed, "fingerprint_config", unreadable)
    with pytest.raises(TrtqError, match=r"read_calibration_cache: OSError: \[Errno 5\] Input/output error"):
        build_engine(ws, "int8", "int8")
    assert cache.read_bytes() == written


def test_stand_in_engines_compute_the_model(ws: TinyWorkspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stand-in itself: engines compute the ONNX model, so doctor's cosine check means something."""
    bench = backend(ws, monkeypatch)
    batch = ws.first_batch(ws.configs["fp32"]).data
    from trtq.model.runner import OnnxRunner

    expected = OnnxRunner(ws.model_path).infer({"x": batch})["y"]
    np.testing.assert_allclose(bench.infer({"x": batch})["y"], expected, rtol=1e-6)


class RecordingLogger(trt_fake.ILogger):
    def __init__(self) -> None:
        super().__init__()
        self.logged: list[tuple[int, str]] = []

    def log(self, severity: int, msg: str) -> None:
        self.logged.append((int(severity), msg))


def stand_in_int8_build(
    ws: TinyWorkspace, monkeypatch: pytest.MonkeyPatch, calibrator: object | None
) -> tuple[bytes | None, list[tuple[int, str]]]:
    """The stand-in's own builder, driven by hand: the tiny model (no Q/DQ) with the INT8 flag."""
    from trtq.doctor.tiny import PROFILE

    trt = trt_fake.install(monkeypatch)
    logger = RecordingLogger()
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    assert trt.OnnxParser(network, logger).parse_from_file(str(ws.model_path))
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("x", PROFILE["min"], PROFILE["opt"], PROFILE["max"])
    assert config.add_optimization_profile(profile) == 0
    config.set_flag(trt.BuilderFlag.INT8)
    config.int8_calibrator = calibrator
    return builder.build_serialized_network(network, config), logger.logged


def test_stand_in_int8_without_a_calibrator_warns_and_builds(
    ws: TinyWorkspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TensorRT 10 logs that the calibrator is not used (dynamic ranges must come from the user) and
    builds anyway; it does not fail with "Calibration failure"."""
    built, logged = stand_in_int8_build(ws, monkeypatch, None)
    assert built is not None
    assert (
        int(trt_fake.Severity.WARNING),
        "Calibrator is not being used. Users must provide dynamic range for all tensors that are not "
        "Int32 or Bool.",
    ) in logged
    assert not [msg for severity, msg in logged if severity <= int(trt_fake.Severity.ERROR)]


def test_stand_in_calibrator_serving_no_batch_and_no_cache_fails_the_build(
    ws: TinyWorkspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Empty(trt_fake.IInt8EntropyCalibrator2):
        def read_calibration_cache(self) -> None:
            return None

        def get_batch(self, names: list[str]) -> None:
            return None

        def write_calibration_cache(self, cache: memoryview) -> None:
            raise AssertionError("nothing was calibrated")

    built, logged = stand_in_int8_build(ws, monkeypatch, Empty())
    assert built is None
    assert logged == [
        (int(trt_fake.Severity.ERROR), "Calibration failure occurred with no scaling factors detected.")
    ]


def test_doctor_int8_build_of_a_qdq_model_reports_no_calibration(
    ws: TinyWorkspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """build.precision int8 on a Q/DQ model: the build report's calibration is None (no calibrator),
    which doctor's build check must read as such, not index into."""
    model = qdq_model(ws)
    trt_fake.install(monkeypatch)
    detail = build_engine(ws, "int8-on-qdq", "int8", model={"path": model.name})
    assert "layers" in detail and "calibration" not in detail


def gpu_suite_on_the_stand_in(monkeypatch: pytest.MonkeyPatch) -> Any:
    """tests/test_gpu.py loaded against the stand-in (under another name: the real module stays
    as pytest collected it, skipped here for want of TensorRT)."""
    import importlib.util

    trt_fake.install(monkeypatch)
    spec = importlib.util.spec_from_file_location(
        "gpu_suite_on_stand_in", Path(__file__).with_name("test_gpu.py")
    )
    assert spec is not None and spec.loader is not None
    suite = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(suite)
    return suite


@pytest.mark.parametrize("capability", [(7, 5), (6, 1)])
def test_the_gpu_suite_skips_bf16_io_below_compute_capability_8(
    ws: TinyWorkspace, monkeypatch: pytest.MonkeyPatch, capability: tuple[int, int]
) -> None:
    """BF16 needs a GPU of compute capability 8.0 or above (triton-inference-server/server#7310,
    TensorRT backend): below that the BF16 I/O test is skipped with that reason, not failed."""
    monkeypatch.setattr(trt_fake, "COMPUTE_CAPABILITY", capability)
    suite = gpu_suite_on_the_stand_in(monkeypatch)
    with pytest.raises(pytest.skip.Exception) as skipped:
        suite.test_bf16_engine_io_matches_onnxruntime(ws)
    reason = str(skipped.value)
    assert "compute capability 8.0 or above" in reason
    assert f"{trt_fake.GPUS[0]} is {capability[0]}.{capability[1]}" in reason


@pytest.mark.parametrize("capability", [(8, 0), (8, 6), (9, 0)])
def test_bf16_is_not_gated_from_compute_capability_8(
    monkeypatch: pytest.MonkeyPatch, capability: tuple[int, int]
) -> None:
    monkeypatch.setattr(trt_fake, "COMPUTE_CAPABILITY", capability)
    trt_fake.install(monkeypatch)
    from trtq.trt.device import bf16_unsupported

    assert bf16_unsupported() is None
