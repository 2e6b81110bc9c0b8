"""trtq/trt's builder, runner and CUDA-graph code against a stand-in ``tensorrt`` module and fake
CUDA objects: the parts whose behaviour does not need a GPU (refusals, return values TensorRT
reports instead of raising, error precedence, BF16 bits, where libcudart is looked for)."""

from __future__ import annotations

import importlib
import struct
import sys
import types
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from conftest import WriteConfig

from trtq.config import load_config
from trtq.errors import TrtqError

TRT_MODULES = ("trtq.trt.builder", "trtq.trt.runner", "trtq.trt.logger", "trtq.trt.version")


class _Logger:
    class Severity:
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

    def __init__(self) -> None:
        pass


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], types.ModuleType]]:
    """``stand_in(version)`` installs a minimal ``tensorrt`` of that version and returns it."""

    def install(version: str) -> types.ModuleType:
        fake = types.ModuleType("tensorrt")
        fake.__version__ = version  # type: ignore[attr-defined]
        fake.DataType = types.SimpleNamespace(
            FLOAT=0, HALF=1, INT8=2, INT32=3, BOOL=4, UINT8=5, BF16=7, INT64=8
        )  # type: ignore[attr-defined]
        fake.ILogger = _Logger  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "tensorrt", fake)
        for name in TRT_MODULES:
            sys.modules.pop(name, None)
        return fake

    yield install
    for name in TRT_MODULES:
        sys.modules.pop(name, None)


def config_with_build(write_config: WriteConfig, **build: object) -> Path:
    path = write_config(n_images=4)
    data = yaml.safe_load(path.read_text())
    data["build"] = build
    path.write_text(yaml.safe_dump(data))
    return path


def test_tensorrt_11_refuses_layer_precisions_with_the_way_out(
    stand_in: Callable[[str], types.ModuleType], write_config: WriteConfig
) -> None:
    """TensorRT 11 removed ILayer.precision, set_output_type and PREFER_PRECISION_CONSTRAINTS."""
    stand_in("11.0.0.114")
    builder = importlib.import_module("trtq.trt.builder")
    config = load_config(
        config_with_build(write_config, precision="fp32", layer_precisions={"conv*": "fp16"})
    )
    with pytest.raises(TrtqError, match=r"TensorRT 11\.0\.0\.114 removed per-layer precision") as error:
        builder.build(config)
    assert "int8-qdq" in str(error.value) and "qdq.exclude" in str(error.value)


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_tensorrt_11_refuses_weakly_typed_builds_with_one_message(
    stand_in: Callable[[str], types.ModuleType], write_config: WriteConfig, precision: str
) -> None:
    stand_in("11.0.0.114")
    builder = importlib.import_module("trtq.trt.builder")
    config = load_config(config_with_build(write_config, precision=precision))
    with pytest.raises(TrtqError) as error:
        builder.build(config)  # refused before any TensorRT object is made (the stand-in has none)
    assert str(error.value) == (
        f"build.precision {precision}: TensorRT 11.0.0.114 removed weak typing (no FP16/INT8 builder "
        "flags, no INT8 calibrators); make a Q/DQ model with `trtq qdq` and use build.precision: int8-qdq"
    )


def test_strongly_typed_build_refuses_layer_precisions_on_tensorrt_10(
    stand_in: Callable[[str], types.ModuleType], write_config: WriteConfig
) -> None:
    stand_in("10.16.1.11")
    builder = importlib.import_module("trtq.trt.builder")
    config = load_config(
        config_with_build(write_config, precision="int8-qdq", layer_precisions={"conv*": "fp16"})
    )
    with pytest.raises(TrtqError, match=r"strongly typed .* qdq\.exclude"):
        builder.build(config)


def test_layer_types_are_read_from_tensorrt_10_and_11_inspector_json(
    stand_in: Callable[[str], types.ModuleType],
) -> None:
    """TensorRT 10's "Format/Datatype" (as in NVIDIA's developer guide, "Engine Inspector") and
    TensorRT 11's separate "DataType" and "Format" (its 10.x -> 11.x inspector migration page)."""
    stand_in("11.0.0.114")
    builder = importlib.import_module("trtq.trt.builder")
    v10 = {
        "Layers": [
            {
                "Name": "conv + relu",
                "LayerType": "CaskConvolution",
                "Outputs": [
                    {
                        "Name": "y",
                        "Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format.",
                    }
                ],
            },
            "a layer name only",
        ]
    }
    v11 = {
        "Layers": [
            {
                "Name": "conv + relu",
                "LayerType": "CaskConvolution",
                "Outputs": [
                    {"Name": "y", "DataType": "Half", "Format": "Row major linear FP16 format (kLINEAR)"},
                    {"Name": "z", "DataType": "Int8"},
                ],
            }
        ]
    }
    assert builder.summarize_layers(v10) == [
        {
            "name": "conv + relu",
            "type": "CaskConvolution",
            "outputs": ["Thirty-two wide channel vectorized row major Int8 format."],
        },
        {"name": "a layer name only", "type": "", "outputs": []},
    ]
    assert builder.summarize_layers(v11)[0]["outputs"] == [
        "Half, Row major linear FP16 format (kLINEAR)",
        "Int8",
    ]


class FakeTimingCache:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def serialize(self) -> bytes:
        return self.data + b"+timings"


class FakeBuilderConfig:
    """IBuilderConfig's timing-cache calls as the binding reports them: create_timing_cache returns
    None for bytes it cannot read (NVIDIA's samples check for nullptr), set_timing_cache returns
    False for a cache it rejects (ignore_mismatch=False and another device), get_timing_cache may
    return None."""

    def __init__(self, rejects: bytes = b"", corrupt: bytes = b"", reports_none: bool = False) -> None:
        self.rejects = rejects
        self.corrupt = corrupt
        self.reports_none = reports_none
        self.attached: FakeTimingCache | None = None

    def create_timing_cache(self, data: bytes) -> FakeTimingCache | None:
        return None if data and bytes(data) == self.corrupt else FakeTimingCache(bytes(data))

    def set_timing_cache(self, cache: FakeTimingCache, ignore_mismatch: bool) -> bool:
        assert isinstance(cache, FakeTimingCache) and ignore_mismatch is False
        if cache.data and cache.data == self.rejects:
            return False
        self.attached = cache
        return True

    def get_timing_cache(self) -> FakeTimingCache | None:
        return None if self.reports_none else self.attached


def test_timing_cache_from_another_device_is_kept_and_this_gpus_timings_go_beside_it(
    stand_in: Callable[[str], types.ModuleType], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stand_in("10.16.1.11")
    builder = importlib.import_module("trtq.trt.builder")
    path = tmp_path / "timing.cache"
    path.write_bytes(b"from another GPU")
    config = FakeBuilderConfig(rejects=b"from another GPU", reports_none=True)
    attached = builder.attach_timing_cache(config, path, "NVIDIA A100-SXM4-40GB")
    beside = tmp_path / "timing.NVIDIA-A100-SXM4-40GB.cache"
    assert config.attached is attached.cache and attached.cache.data == b"" and attached.save_to == beside
    err = capsys.readouterr().err
    assert f"rejected the timing cache {path}" in err and f"timings go to {beside}" in err
    builder.save_timing_cache(config, attached)  # get_timing_cache() gave None: the attached one
    assert path.read_bytes() == b"from another GPU"  # the shared cache is not lost
    assert beside.read_bytes() == b"+timings"
    # The next build on this GPU: the shared file is still rejected, this GPU's file is used.
    again = builder.attach_timing_cache(
        FakeBuilderConfig(rejects=b"from another GPU"), path, "NVIDIA A100-SXM4-40GB"
    )
    assert again.cache.data == b"+timings" and again.save_to == beside


def test_corrupt_timing_cache_is_replaced_by_a_fresh_one(
    stand_in: Callable[[str], types.ModuleType], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stand_in("10.16.1.11")
    builder = importlib.import_module("trtq.trt.builder")
    path = tmp_path / "timing.cache"
    path.write_bytes(b"trunc")
    config = FakeBuilderConfig(corrupt=b"trunc")
    attached = builder.attach_timing_cache(config, path, "GPU")
    assert config.attached is attached.cache and attached.cache.data == b"" and attached.save_to == path
    assert f"could not read the timing cache {path}" in capsys.readouterr().err
    builder.save_timing_cache(config, attached)
    assert path.read_bytes() == b"+timings"


def test_accepted_or_absent_timing_cache_is_saved_in_place(
    stand_in: Callable[[str], types.ModuleType], tmp_path: Path
) -> None:
    stand_in("10.16.1.11")
    builder = importlib.import_module("trtq.trt.builder")
    path = tmp_path / "timing.cache"
    config = FakeBuilderConfig(rejects=b"other")
    attached = builder.attach_timing_cache(config, path, "GPU")  # no file yet
    assert attached.cache.data == b"" and attached.save_to == path
    path.write_bytes(b"mine")
    attached = builder.attach_timing_cache(config, path, "GPU")
    assert attached.cache.data == b"mine" and attached.save_to == path
    builder.save_timing_cache(config, builder.AttachedTimingCache(FakeTimingCache(b"unused"), path))
    assert path.read_bytes() == b"mine+timings"  # from get_timing_cache()


def test_shape_outside_the_profile_names_input_shape_and_profile(
    stand_in: Callable[[str], types.ModuleType],
) -> None:
    stand_in("10.16.1.11")
    runner = importlib.import_module("trtq.trt.runner")

    class Context:
        def set_input_shape(self, name: str, shape: list[int]) -> bool:
            return False  # what IExecutionContext does for a shape outside the profile

    class Engine:
        def get_tensor_profile_shape(self, name: str, profile: int) -> list[list[int]]:
            assert profile == 0
            return [[1, 3, 48, 192], [4, 3, 48, 192], [8, 3, 48, 192]]

    with pytest.raises(TrtqError) as error:
        runner.set_input_shape(Context(), Engine(), "x", [16, 3, 48, 192])
    assert str(error.value).startswith(
        "input 'x': shape [16, 3, 48, 192] is outside the engine's optimization profile 0 "
        "(min [1, 3, 48, 192], opt [4, 3, 48, 192], max [8, 3, 48, 192])"
    )


def test_bf16_outputs_are_reinterpreted_not_converted(stand_in: Callable[[str], types.ModuleType]) -> None:
    stand_in("10.16.1.11")
    runner = importlib.import_module("trtq.trt.runner")
    values = [1.0, -2.5, 3.140625, 0.0, -0.0, 65280.0, float("inf"), 2.0**-126]  # exact in bfloat16
    # bfloat16 = the float32's two most significant bytes (read independently with struct).
    words = np.array([struct.unpack(">H", struct.pack(">f", v)[:2])[0] for v in values], dtype=np.uint16)
    result = runner.bf16_to_float32(words.reshape(2, 4))
    assert result.dtype == np.float32 and result.shape == (2, 4)
    np.testing.assert_array_equal(result.ravel(), np.array(values, dtype=np.float32))
    assert np.signbit(result.ravel()[4])  # -0.0 keeps its sign bit


def bf16_oracle(value: float) -> int:
    """float32 -> bfloat16 bits by exact arithmetic: the nearer of the two bf16 neighbours of the
    float32 (read with struct), the even one on a tie."""
    bits = struct.unpack(">I", struct.pack(">f", value))[0]
    low = bits >> 16
    if low & 0x7F80 == 0x7F80:  # inf stays inf (NaN is not given to the oracle)
        return low

    def as_fraction(word: int) -> Fraction:
        if word & 0x7FFF == 0x7F80:  # overflow: IEEE rounds as if the next power 2**128 existed
            return Fraction(-(2**128) if word & 0x8000 else 2**128)
        return Fraction(struct.unpack(">f", struct.pack(">I", word << 16))[0])

    exact = Fraction(struct.unpack(">f", struct.pack(">I", bits))[0])
    below, above = abs(exact - as_fraction(low)), abs(as_fraction(low + 1) - exact)
    return low + 1 if above < below or (above == below and low % 2) else low


def test_float32_to_bf16_rounds_to_nearest_even(stand_in: Callable[[str], types.ModuleType]) -> None:
    stand_in("10.16.1.11")
    runner = importlib.import_module("trtq.trt.runner")
    ties = [1 + 2**-8, 1 + 3 * 2**-8, -(1 + 2**-8), 2**-126 * (1 + 2**-8)]  # halfway: to the even word
    rng = np.random.default_rng(7)
    values = [*ties, 1.0, -2.5, 0.0, -0.0, 0.1, 255.0, 3.3e38, float("inf"), -float("inf")]
    values += [float(v) for v in rng.uniform(-300, 300, size=200).astype(np.float32)]
    values += [float(v) for v in rng.standard_normal(50).astype(np.float32) * 1e-30]
    words = runner.float32_to_bf16(np.array(values, dtype=np.float32))
    assert words.dtype == np.uint16
    assert [int(w) for w in words] == [bf16_oracle(v) for v in values]
    assert [int(w) for w in words[:4]] == [0x3F80, 0x3F82, 0xBF80, 0x0080]
    assert int(runner.float32_to_bf16(np.float32(3.4028235e38))) == 0x7F80  # rounds up to inf
    nan = runner.float32_to_bf16(np.array([np.nan], dtype=np.float32))
    assert np.isnan(runner.bf16_to_float32(nan))[0]
    np.testing.assert_array_equal(runner.bf16_to_float32(words[4:8]), np.float32([1.0, -2.5, 0.0, -0.0]))


class FakeCuda:
    """pycuda.driver as the runner uses it, with host arrays for device memory."""

    BLOCKING_SYNC = 1
    event_flags = types.SimpleNamespace(BLOCKING_SYNC=1)

    def __init__(self) -> None:
        self.device: dict[int, np.ndarray] = {}

    def pagelocked_empty(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        return np.empty(shape, dtype=dtype)

    def mem_alloc(self, nbytes: int) -> int:
        address = 0x1000 * (len(self.device) + 1)
        self.device[address] = np.zeros(nbytes, dtype=np.uint8)
        return address

    def memcpy_htod_async(self, device: int, host: np.ndarray, stream: object) -> None:
        self.device[device][: host.nbytes] = np.frombuffer(host.tobytes(), dtype=np.uint8)

    def memcpy_dtoh_async(self, host: np.ndarray, device: int, stream: object) -> None:
        host.view(np.uint8).reshape(-1)[:] = self.device[device][: host.nbytes]

    class Stream:
        handle = 0x77

        def synchronize(self) -> None:
            pass

    class Event:
        def __init__(self, flags: int = 0) -> None:
            pass

        def record(self, stream: object) -> None:
            pass

        def synchronize(self) -> None:
            pass

        def time_since(self, other: object) -> float:
            return 0.5


class IdentityEngine:
    """One BF16 input 'x' and one BF16 output 'y'; executing copies x's device bytes to y's."""

    def __init__(self, cuda: FakeCuda, trt: types.ModuleType, shape: list[int], fail: bool = False) -> None:
        self.cuda, self.trt, self.shape, self.fail = cuda, trt, shape, fail
        self.num_io_tensors = 2
        self.addresses: dict[str, int] = {}
        self.executions = 0
        self.capture_fails_with: Any = None

    def get_tensor_name(self, index: int) -> str:
        return ["x", "y"][index]

    def get_tensor_mode(self, name: str) -> int:
        return self.trt.TensorIOMode.INPUT if name == "x" else self.trt.TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name: str) -> int:
        return self.trt.DataType.BF16

    def get_tensor_profile_shape(self, name: str, profile: int) -> list[list[int]]:
        return [self.shape] * 3

    def create_execution_context(self) -> IdentityEngine:
        return self

    def set_input_shape(self, name: str, shape: list[int]) -> bool:
        return list(shape) == self.shape

    def get_tensor_shape(self, name: str) -> list[int]:
        return self.shape

    def set_tensor_address(self, name: str, address: int) -> bool:
        self.addresses[name] = address
        return True  # the binding returns IExecutionContext::setTensorAddress's bool (pyCore.cpp)

    def execute_async_v3(self, stream: int) -> bool:
        if self.fail or (self.capture_fails_with is not None and self.capture_fails_with.capturing):
            return False  # what TensorRT reports for an enqueue it cannot run (or capture)
        self.executions += 1
        self.cuda.device[self.addresses["y"]][:] = self.cuda.device[self.addresses["x"]]
        return True


def backend_with(
    stand_in: Callable[[str], types.ModuleType],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    cuda_graph: bool = False,
    capture_fails_with: Any = None,
) -> tuple[Any, FakeCuda, IdentityEngine]:
    """A TensorRTBackend over the identity engine, with fake pycuda; the engine's enqueue fails
    while ``capture_fails_with`` (a fake libcudart) is capturing."""
    trt = stand_in("10.16.1.11")
    trt.TensorIOMode = types.SimpleNamespace(INPUT=0, OUTPUT=1)  # type: ignore[attr-defined]
    cuda = FakeCuda()
    engine = IdentityEngine(cuda, trt, [2, 3])
    engine.capture_fails_with = capture_fails_with

    class Runtime:
        def __init__(self, logger: object) -> None:
            pass

        def deserialize_cuda_engine(self, data: bytes) -> IdentityEngine:
            return engine

    trt.Runtime = Runtime  # type: ignore[attr-defined]
    pycuda = types.ModuleType("pycuda")
    pycuda.driver = cuda  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pycuda", pycuda)
    monkeypatch.setitem(sys.modules, "pycuda.driver", cuda)  # type: ignore[arg-type]
    monkeypatch.setitem(sys.modules, "pycuda.autoprimaryctx", types.ModuleType("pycuda.autoprimaryctx"))
    runner = importlib.import_module("trtq.trt.runner")
    engine_file = tmp_path / "identity.engine"
    engine_file.write_bytes(b"engine")
    return runner.TensorRTBackend(engine_file, None, cuda_graph, spin_wait=False), cuda, engine


def test_bf16_inputs_hold_bf16_bits_in_bench_and_infer(
    stand_in: Callable[[str], types.ModuleType], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    backend, _, _ = backend_with(stand_in, monkeypatch, tmp_path)
    runner = sys.modules["trtq.trt.runner"]
    host, _ = backend._inputs[0]
    # bench's inputs: trtexec's uniform [-1, 1] data from the seeded generator, as bf16 words
    expected = np.random.default_rng(0).uniform(-1, 1, size=(2, 3))
    assert host.dtype == np.uint16
    assert [int(w) for w in host.ravel()] == [bf16_oracle(float(np.float32(v))) for v in expected.ravel()]
    # compare's pixels go in as bf16 and come back (through the identity engine) as float32
    batch = np.array([[0.5, -117.3, 254.9], [1e-3, 3.0, -0.0]], dtype=np.float32)
    result = backend.infer(dict.fromkeys(backend.input_shapes, batch))["y"]
    oracle = np.array([bf16_oracle(float(v)) for v in batch.ravel()], dtype=np.uint16)
    np.testing.assert_array_equal(result, runner.bf16_to_float32(oracle).reshape(2, 3))
    np.testing.assert_allclose(result, batch, rtol=2**-8)


def test_libcudart_is_looked_for_in_pip_wheels_under_site_packages_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import site

    from trtq.trt.cuda_graph import cudart_candidates

    venv = "/opt/venv/lib/python3.12/site-packages"
    # Paths inside nvidia-cuda-runtime-cu12 12.9.79 and nvidia-cuda-runtime 13.5.37 (their wheel listings).
    wheel12 = f"{venv}/nvidia/cuda_runtime/lib/libcudart.so.12"
    wheel13 = f"{venv}/nvidia/cu13/lib/libcudart.so.13"
    unknown = cudart_candidates([venv])
    assert unknown[0] == "libcudart.so" and {wheel12, wheel13} <= set(unknown)
    assert unknown.index("libcudart.so.13") < unknown.index("libcudart.so.12")
    # tensorrt-cu12: CUDA 12's runtime first, the toolkit's unversioned name (maybe 11 or 13) after.
    cu12 = cudart_candidates([venv], prefer=12)
    assert cu12[:2] == ["libcudart.so.12", wheel12]
    assert cu12.index("libcudart.so") < cu12.index("libcudart.so.13")
    assert cudart_candidates([venv], prefer=13)[:2] == ["libcudart.so.13", wheel13]

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", ["", str(tmp_path), *sys.path])  # the current directory
    defaults = cudart_candidates()
    assert f"{site.getsitepackages()[0]}/nvidia/cuda_runtime/lib/libcudart.so.12" in defaults
    assert not [name for name in defaults if name.startswith((str(tmp_path), "nvidia/"))]


def test_tensorrt_cuda_major_comes_from_the_installed_wheel(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.metadata

    from trtq.trt import cuda_graph

    def installed(*names: str) -> Callable[[str], str]:
        def version(name: str) -> str:
            if name in names:
                return "10.16.1.11"
            raise importlib.metadata.PackageNotFoundError(name)

        return version

    monkeypatch.setattr(importlib.metadata, "version", installed("tensorrt-cu12", "tensorrt-cu12-libs"))
    assert cuda_graph.tensorrt_cuda_major() == 12
    monkeypatch.setattr(importlib.metadata, "version", installed("tensorrt-cu13-libs"))
    assert cuda_graph.tensorrt_cuda_major() == 13
    monkeypatch.setattr(importlib.metadata, "version", installed())  # NVIDIA's container: no wheel
    assert cuda_graph.tensorrt_cuda_major() is None


class VersionedCudart:
    """A loaded libcudart that only answers cudaRuntimeGetVersion (1000 * major + 10 * minor)."""

    def __init__(self, version: int) -> None:
        self.version = version

    def cudaRuntimeGetVersion(self, out: Any) -> int:
        out._obj.value = self.version
        return 0


def test_a_cuda_11_runtime_is_passed_over_and_named_when_nothing_else_is_found() -> None:
    """CUDA 11's cudaGraphInstantiate takes five arguments: calling it with three would be wrong."""
    from trtq.trt.cuda_graph import load_cudart

    runtimes = {"libcudart.so": VersionedCudart(11080), "libcudart.so.12": VersionedCudart(12040)}

    def loader(name: str) -> VersionedCudart:
        if name not in runtimes:
            raise OSError(f"{name}: cannot open shared object file")
        return runtimes[name]

    chosen = load_cudart(["libcudart.so", "libcudart.so.13", "libcudart.so.12"], loader)
    assert chosen is runtimes["libcudart.so.12"]
    with pytest.raises(TrtqError, match=r"CUDA 12 or 13 runtime .*\(libcudart\.so is CUDA 11\.8\)"):
        load_cudart(["libcudart.so", "libcudart.so.13"], loader)


CUDA_ERRORS = {901: b"operation failed due to a previous error during capture"}  # cudaGetErrorString's text


class FakeCudart:
    """libcudart's graph calls: records them, returns the configured cudaError codes."""

    def __init__(self, end_capture: int = 0) -> None:
        self.end_capture = end_capture
        self.calls: list[tuple[str, Any]] = []
        self.capturing = False

    def cudaStreamBeginCapture(self, stream: Any, mode: int) -> int:
        self.calls.append(("begin", mode))
        self.capturing = True
        return 0

    def cudaStreamEndCapture(self, stream: Any, graph: Any) -> int:
        self.calls.append(("end", None))
        self.capturing = False
        graph._obj.value = 0 if self.end_capture else 0x1000
        return self.end_capture

    def cudaGetLastError(self) -> int:
        self.calls.append(("clear error", None))
        return 0

    def cudaGetErrorString(self, status: int) -> bytes:
        return CUDA_ERRORS.get(status, b"unrecognized error code")

    def cudaGraphInstantiate(self, executable: Any, graph: Any, flags: Any) -> int:
        executable._obj.value = 0x2000
        self.calls.append(("instantiate", graph.value))
        return 0

    def cudaGraphDestroy(self, graph: Any) -> int:
        self.calls.append(("destroy", graph.value))
        return 0

    def cudaGraphLaunch(self, executable: Any, stream: Any) -> int:
        self.calls.append(("launch", executable.value))
        return 0

    def cudaGraphExecDestroy(self, executable: Any) -> int:
        self.calls.append(("exec destroy", executable.value))
        return 0


def test_enqueue_error_is_not_hidden_by_the_capture_ending() -> None:
    from trtq.trt.cuda_graph import CudaGraph, GraphCaptureError

    def failing_enqueue() -> None:
        raise TrtqError("TensorRT execute_async_v3 failed")

    lib = FakeCudart(end_capture=901)  # cudaErrorStreamCaptureInvalidated, what a failed capture ends with
    with pytest.raises(GraphCaptureError) as error:
        CudaGraph(0x10, failing_enqueue, lib=lib)
    assert str(error.value) == (
        "TensorRT execute_async_v3 failed while capturing a CUDA graph (the capture ended with "
        "operation failed due to a previous error during capture (cudaError 901))"
    )
    assert [name for name, _ in lib.calls] == ["begin", "end", "clear error"]  # ended, error state cleared


def test_failed_capture_falls_back_to_plain_enqueues_with_a_warning_in_the_bench_result(
    stand_in: Callable[[str], types.ModuleType],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """As trtexec: an engine whose enqueue cannot be captured is timed without a graph, and says so."""
    from trtq.runner.timing import TimingSettings, analyse, run_timed
    from trtq.trt import cuda_graph

    lib = FakeCudart(end_capture=901)
    monkeypatch.setattr(cuda_graph, "load_cudart", lambda candidates: lib)
    backend, _, engine = backend_with(
        stand_in, monkeypatch, tmp_path, cuda_graph=True, capture_fails_with=lib
    )
    assert backend._graph is None and engine.executions == 2  # warm-up, then the one after the fallback
    warning = (
        "CUDA graph capture failed (TensorRT execute_async_v3 failed while capturing a CUDA graph (the "
        "capture ended with operation failed due to a previous error during capture (cudaError 901))); "
        "timing plain enqueues instead (cuda_graph off)"
    )
    assert backend.warnings == [warning] and warning in capsys.readouterr().err
    trace = run_timed(backend, TimingSettings(warmup_ms=0.0, duration_s=0.0, iterations=3))
    assert engine.executions == 2 + len(trace.queries)  # queries enqueue directly, no graph launch
    result = analyse("identity.engine", backend, trace, (99.0,)).to_json()
    assert result["warnings"][0] == warning


def test_graph_exec_is_destroyed_once() -> None:
    from trtq.trt.cuda_graph import CudaGraph

    lib = FakeCudart()
    graph = CudaGraph(0x10, lambda: None, lib=lib)
    graph.launch()
    graph.close()
    graph.close()
    with pytest.raises(TrtqError, match="after close"):
        graph.launch()
    assert lib.calls[1:] == [
        ("end", None),
        ("instantiate", 0x1000),
        ("destroy", 0x1000),
        ("launch", 0x2000),
        ("exec destroy", 0x2000),
    ]
    dropped = FakeCudart()
    CudaGraph(0x10, lambda: None, lib=dropped)  # never closed: garbage collection destroys it
    assert dropped.calls[-1] == ("exec destroy", 0x2000)


def test_the_build_preflight_names_the_files_the_builder_writes(
    stand_in: Callable[[str], types.ModuleType], write_config: WriteConfig
) -> None:
    """trtq/cli/preflight.py checks a build's engine and report before TensorRT loads, so it names
    them without trtq.trt.builder: both must say the same."""
    from trtq.cli import preflight

    stand_in("10.13.3")
    builder = importlib.import_module("trtq.trt.builder")
    for build in ({"precision": "fp16"}, {"precision": "int8", "engine": "engines/x.plan"}):
        config = load_config(config_with_build(write_config, **build))
        engine = builder.engine_path(config)
        assert engine == preflight.engine_path(config)
        assert builder.build_report_path(engine) == preflight.build_report_path(engine)
