"""A stand-in for ``tensorrt``, ``pycuda`` and libcudart that runs trtq's whole GPU path on the CPU.

Its rules come from the binding sources, not from trtq (NVIDIA/TensorRT v10.16 unless noted):

- ``python/src/infer/pyCore.cpp``: ``set_tensor_address``, ``set_input_shape`` and
  ``execute_async_v3`` return the C++ bool; ``deserialize_cuda_engine``, ``create_timing_cache``
  return None for a null pointer; ``add_optimization_profile`` returns the profile index, -1 for an
  invalid profile; ``set_calibration_profile`` and ``set_timing_cache`` return bool. None of them raise.
- ``python/src/infer/pyInt8.cpp``: the calibrator trampoline catches every exception of the Python
  callbacks, prints it and returns null/false: an exception in ``read_calibration_cache`` means
  "no cache" (TensorRT calibrates), ``None`` or ``[]`` from ``get_batch`` ends calibration.
- The builder with the INT8 flag calls the calibrator only for a network without Q/DQ layers (as
  Polygraphy attaches one only then, ``backend/trt/config.py``); a calibrator that serves no batch
  and no cache fails the build ("Calibration failure occurred with no scaling factors detected").
  With the INT8 flag and no calibrator at all, TensorRT 10 logs the warning "Calibrator is not
  being used. Users must provide dynamic range for all tensors that are not Int32 or Bool." and
  builds anyway (the stand-in does the same; it has no dynamic ranges to check).
- A calibration cache whose header names another algorithm than the calibrator's is discarded and
  TensorRT asks for batches (docs/tensorrt.md, section 2; an NVIDIA maintainer: TensorRT "will skip
  the file if it is incompatible", NVIDIA/TensorRT#1378). ASSUMPTION, not established by any public
  source: the stand-in also discards a cache whose header names another TensorRT version than the
  running one; real TensorRT may accept such a cache.
- ASSUMPTION: ``set_timing_cache`` returns False for a timing cache made on another GPU (the
  stand-in tells GPUs apart by name). The binding's documentation (pyCoreDoc.h) says only that "a
  failure will be reported" when the cache's CUDA device property differs, unless
  ``ignore_mismatch``, and that the call returns whether it succeeded; whether that failure is this
  return value, a log message or both, and which device properties count, is not established.
- TensorRT 11 has no calibrator classes and no FP16/INT8 builder flags (v11.0/v11.1).
- pycuda (``pycuda/autoprimaryctx.py``, ``tools.make_default_context``): the primary context is
  the one of device ``CUDA_DEVICE`` when set.
- Output shapes of an engine whose shape depends on data are -1 until it runs (NvInfer.h,
  ``IExecutionContext::getTensorShape``).

What it cannot stand in for: TensorRT's kernels. Engines run the ONNX model in ONNX Runtime (FP16
engines round their outputs to float16), so it proves the plumbing, not TensorRT's numerics.
"""

from __future__ import annotations

import json
import os
import sys
import time
import types
from enum import IntEnum
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest

MAGIC = b"FAKE-TRT-ENGINE\n"
TIMING = b"FAKE-TIMING:"
GPUS = ["Fake GPU A (device 0)", "Fake GPU B (device 1)"]
COMPUTE_CAPABILITY = (8, 6)
"""Every fake GPU's (major, minor); tests set another to stand for an older GPU."""


class DataType(IntEnum):
    FLOAT, HALF, INT8, INT32, BOOL, UINT8, FP8, BF16, INT64 = range(9)


class TensorIOMode(IntEnum):
    NONE, INPUT, OUTPUT = range(3)


class LayerType(IntEnum):
    OTHER, QUANTIZE, DEQUANTIZE = range(3)


class Severity(IntEnum):
    INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)


class ILogger:
    Severity = Severity

    def __init__(self) -> None:
        pass


# ---------------------------------------------------------------- device memory (pycuda.driver)

MEMORY: dict[int, bytearray] = {}


class DeviceAllocation:
    def __init__(self, nbytes: int) -> None:
        self.address = 0x10_0000 * (max(MEMORY, default=0) // 0x10_0000 + 1)  # never a live one's
        MEMORY[self.address] = bytearray(nbytes)

    def __int__(self) -> int:
        return self.address

    def free(self) -> None:
        MEMORY.pop(self.address, None)


def _write(address: Any, host: np.ndarray) -> None:
    data = np.ascontiguousarray(host).tobytes()
    MEMORY[int(address)][: len(data)] = data


def _read(address: int, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    count = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return np.frombuffer(bytes(MEMORY[address][:count]), dtype=dtype).reshape(shape).copy()


class Device:
    def __init__(self, index: int) -> None:
        self.index = index

    @staticmethod
    def count() -> int:
        return len(GPUS)

    def name(self) -> str:
        return GPUS[self.index]

    def compute_capability(self) -> tuple[int, int]:
        return COMPUTE_CAPABILITY


class Stream:
    handle = 0x5EA

    def synchronize(self) -> None:
        pass


class Event:
    """Host time stands in for the GPU's (work here runs synchronously in enqueue)."""

    def __init__(self, flags: int = 0) -> None:
        self.at = time.perf_counter()

    def record(self, stream: object = None) -> None:
        self.at = time.perf_counter()

    def synchronize(self) -> None:
        pass

    def time_since(self, other: Event) -> float:
        return (self.at - other.at) * 1e3


def pycuda_modules() -> dict[str, types.ModuleType]:
    driver = types.ModuleType("pycuda.driver")
    driver.init = lambda: None  # type: ignore[attr-defined]
    driver.get_driver_version = lambda: 12040  # type: ignore[attr-defined]
    driver.Device = Device  # type: ignore[attr-defined]
    driver.Stream = Stream  # type: ignore[attr-defined]
    driver.Event = Event  # type: ignore[attr-defined]
    driver.event_flags = types.SimpleNamespace(BLOCKING_SYNC=1)  # type: ignore[attr-defined]
    driver.mem_alloc = DeviceAllocation  # type: ignore[attr-defined]
    driver.pagelocked_empty = lambda shape, dtype: np.empty(shape, dtype=dtype)  # type: ignore[attr-defined]
    driver.memcpy_htod = _write  # type: ignore[attr-defined]
    driver.memcpy_htod_async = lambda device, host, stream=None: _write(device, host)  # type: ignore[attr-defined]

    def dtoh(host: np.ndarray, device: Any, stream: object = None) -> None:
        host[...] = _read(int(device), host.shape, host.dtype)

    driver.memcpy_dtoh_async = dtoh  # type: ignore[attr-defined]
    package = types.ModuleType("pycuda")
    package.driver = driver  # type: ignore[attr-defined]
    package.VERSION_TEXT = "2025.1.2"  # type: ignore[attr-defined]
    primary = types.ModuleType("pycuda.autoprimaryctx")
    primary.device = Device(int(os.environ.get("CUDA_DEVICE", "0")))  # type: ignore[attr-defined]
    return {"pycuda": package, "pycuda.driver": driver, "pycuda.autoprimaryctx": primary}


# ---------------------------------------------------------------- libcudart (CUDA graphs)


class Cudart:
    """libcudart's graph calls: work enqueued while capturing is recorded and replayed on launch."""

    def __init__(self) -> None:
        self.capturing = False
        self.recorded: list[Any] = []
        self.graphs: dict[int, list[Any]] = {}

    def cudaRuntimeGetVersion(self, out: Any) -> int:
        out._obj.value = 12040
        return 0

    def cudaStreamBeginCapture(self, stream: Any, mode: int) -> int:
        self.capturing, self.recorded = True, []
        return 0

    def cudaStreamEndCapture(self, stream: Any, graph: Any) -> int:
        self.capturing = False
        graph._obj.value = 0x6000 + len(self.graphs)
        self.graphs[graph._obj.value] = self.recorded
        return 0

    def cudaGraphInstantiate(self, executable: Any, graph: Any, flags: Any) -> int:
        executable._obj.value = graph.value + 0x1000
        self.graphs[executable._obj.value] = self.graphs[graph.value]
        return 0

    def cudaGraphLaunch(self, executable: Any, stream: Any) -> int:
        for work in self.graphs[executable.value]:
            work()
        return 0

    def cudaGraphDestroy(self, graph: Any) -> int:
        return 0

    def cudaGraphExecDestroy(self, executable: Any) -> int:
        return 0

    def cudaGetLastError(self) -> int:
        return 0

    def cudaGetErrorString(self, status: int) -> bytes:
        return b"fake error"


CUDART = Cudart()


# ---------------------------------------------------------------- tensorrt


def encode_version(version: str) -> int:
    major, minor, patch = (int(p) for p in version.split(".")[:3])
    return major * 10000 + minor * 100 + patch


class Trampoline:
    """pyInt8.cpp's pyCalibratorTrampoline: what TensorRT gets from the Python callbacks."""

    algorithm = ""

    def trt_read_calibration_cache(self) -> bytes | None:
        try:
            result = self.read_calibration_cache()  # type: ignore[attr-defined]
            return None if result is None else bytes(memoryview(result).cast("B"))
        except Exception as exc:
            print(f"[ERROR] Exception caught in read_calibration_cache(): {exc}", file=sys.stderr)
            return None

    def trt_get_batch(self, names: list[str]) -> list[int] | None:
        try:
            result = self.get_batch(names)  # type: ignore[attr-defined]
        except Exception as exc:
            print(f"[ERROR] Exception caught in get_batch(): {exc}", file=sys.stderr)
            return None
        return None if result is None or len(result) == 0 else [int(p) for p in result[: len(names)]]

    def trt_write_calibration_cache(self, data: bytes) -> None:
        try:
            self.write_calibration_cache(memoryview(data))  # type: ignore[attr-defined]
        except Exception as exc:
            print(f"[ERROR] Exception caught in write_calibration_cache(): {exc}", file=sys.stderr)


class IInt8EntropyCalibrator2(Trampoline):
    algorithm = "EntropyCalibration2"

    def __init__(self) -> None:
        pass


class IInt8MinMaxCalibrator(Trampoline):
    algorithm = "MinMaxCalibration"

    def __init__(self) -> None:
        pass


class Dims(list):  # type: ignore[type-arg]
    pass


class Profile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple[list[int], list[int], list[int]]] = {}

    def set_shape(self, name: str, low: Any, mid: Any, high: Any) -> None:
        if not all(a <= b <= c for a, b, c in zip(low, mid, high, strict=True)):
            raise RuntimeError("Shape provided for opt is inconsistent with other shapes.")  # PY_ASSERT
        self.shapes[name] = (list(low), list(mid), list(high))

    def __bool__(self) -> bool:  # IOptimizationProfile::isValid: here, at least one input set
        return bool(self.shapes)


class Layer:
    def __init__(self, node: onnx.NodeProto) -> None:
        self.name = node.name or node.output[0]
        kinds = {"QuantizeLinear": LayerType.QUANTIZE, "DequantizeLinear": LayerType.DEQUANTIZE}
        self.type = kinds.get(node.op_type, LayerType.OTHER)
        self.op_type = node.op_type
        self.num_outputs = len(node.output)
        self.precision = DataType.FLOAT

    def set_output_type(self, index: int, dtype: DataType) -> None:
        pass


class Network:
    def __init__(self, flags: int) -> None:
        self.strongly_typed = bool(flags)
        self.model: onnx.ModelProto | None = None
        self.layers: list[Layer] = []
        self.inputs: dict[str, list[int]] = {}

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def get_layer(self, index: int) -> Layer:
        return self.layers[index]


class OnnxParser:
    def __init__(self, network: Network, logger: ILogger) -> None:
        self.network = network
        self.num_errors = 0

    def parse_from_file(self, path: str) -> bool:
        model = onnx.load(path)
        self.network.model = model
        self.network.layers = [Layer(node) for node in model.graph.node]
        initializers = {i.name for i in model.graph.initializer}
        for value in model.graph.input:
            if value.name not in initializers:
                dims = value.type.tensor_type.shape.dim
                self.network.inputs[value.name] = [
                    d.dim_value if d.HasField("dim_value") else -1 for d in dims
                ]
        return True


class TimingCache:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def serialize(self) -> bytes:
        return self.data


class BuilderConfig:
    def __init__(self) -> None:
        self.flags: set[int] = set()
        self.profiles: list[Profile] = []
        self.calibration_profile: Profile | None = None
        self.int8_calibrator: Trampoline | None = None
        self.timing_cache: TimingCache | None = None
        self.profiling_verbosity = 0
        self.builder_optimization_level = 3

    def set_flag(self, flag: int) -> None:
        self.flags.add(flag)

    def set_memory_pool_limit(self, pool: int, size: int) -> None:
        pass

    def add_optimization_profile(self, profile: Profile) -> int:
        if not profile:  # pyCoreDoc.h: "must satisfy bool(profile) == True", else -1
            return -1
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def set_calibration_profile(self, profile: Profile) -> bool:
        if not profile:
            return False
        self.calibration_profile = profile
        return True

    def create_timing_cache(self, data: bytes) -> TimingCache | None:
        data = bytes(data)
        return TimingCache(data) if not data or data.startswith(TIMING) else None

    def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
        if cache.data and cache.data != TIMING + current_gpu().encode():
            return False  # made on another device
        self.timing_cache = cache
        return True

    def get_timing_cache(self) -> TimingCache | None:
        return self.timing_cache


def current_gpu() -> str:
    return str(sys.modules["pycuda.autoprimaryctx"].device.name())  # type: ignore[attr-defined]


class Builder:
    def __init__(self, logger: ILogger) -> None:
        self.logger = logger

    def create_network(self, flags: int = 0) -> Network:
        return Network(flags)

    def create_builder_config(self) -> BuilderConfig:
        return BuilderConfig()

    def create_optimization_profile(self) -> Profile:
        return Profile()

    def build_serialized_network(self, network: Network, config: BuilderConfig) -> bytes | None:
        trt = sys.modules["tensorrt"]
        assert network.model is not None
        if any(-1 in dims for dims in network.inputs.values()) and not config.profiles:
            return self._error("Network has dynamic inputs, but no optimization profile has been defined.")
        for name in network.inputs:
            if config.profiles and name not in config.profiles[0].shapes:
                return self._error(f"{name}: no shape in the optimization profile")
        int8 = getattr(trt.BuilderFlag, "INT8", None) in config.flags
        fp16 = getattr(trt.BuilderFlag, "FP16", None) in config.flags
        qdq = any(layer.type != LayerType.OTHER for layer in network.layers)
        if int8 and not qdq:
            if config.int8_calibrator is None:  # TensorRT 10 warns and builds (dynamic ranges unset)
                self.logger.log(  # type: ignore[attr-defined]
                    Severity.WARNING,
                    "Calibrator is not being used. Users must provide dynamic range for all tensors "
                    "that are not Int32 or Bool.",
                )
            elif not self._calibrate(network, config, config.int8_calibrator):
                return self._error("Calibration failure occurred with no scaling factors detected.")
        precision = "int8" if int8 or qdq else "fp16" if fp16 else "fp32"
        if config.timing_cache is not None:
            config.timing_cache.data = TIMING + current_gpu().encode()
        header = {"precision": precision, "profile": config.profiles[0].shapes if config.profiles else {}}
        header["layers"] = [[layer.name, layer.op_type] for layer in network.layers]
        return MAGIC + json.dumps(header).encode() + b"\n" + network.model.SerializeToString()

    def _error(self, message: str) -> None:
        self.logger.log(Severity.ERROR, message)  # type: ignore[attr-defined]
        return None

    def _calibrate(self, network: Network, config: BuilderConfig, calibrator: Trampoline) -> bool:
        version = sys.modules["tensorrt"].__version__
        header = f"TRT-{encode_version(version)}-{calibrator.algorithm}"
        cache = calibrator.trt_read_calibration_cache()
        if cache is not None and cache.decode(errors="replace").split("\n", 1)[0] == header:
            return True
        profile = config.calibration_profile or config.profiles[0]
        names = list(network.inputs)
        amax = 0.0
        batches = 0
        while (pointers := calibrator.trt_get_batch(names)) is not None:
            batch = _read(pointers[0], tuple(profile.shapes[names[0]][1]), np.float32)
            amax, batches = max(amax, float(np.abs(batch).max())), batches + 1
        if batches == 0:
            return False
        scale = np.float32(amax) / np.float32(127)
        calibrator.trt_write_calibration_cache(f"{header}\n{names[0]}: {scale.view(np.uint32):x}\n".encode())
        return True


class Inspector:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get_engine_information(self, fmt: int) -> str:
        kind = {"int8": "Int8", "fp16": "Half", "fp32": "Float"}[self.engine.header["precision"]]
        eleven = sys.modules["tensorrt"].__version__.startswith("11.")
        layers = []
        for name, op_type in self.engine.header["layers"]:
            dtype = kind if op_type in ("Conv", "Gemm") else "Float"
            output = (
                {"DataType": dtype, "Format": "Row major linear"}
                if eleven
                else {"Format/Datatype": f"Row major linear {dtype} format"}
            )
            layers.append({"Name": name, "LayerType": op_type, "Outputs": [output]})
        return json.dumps({"Layers": layers})


class Engine:
    def __init__(self, header: dict[str, Any], model: bytes) -> None:
        self.header = header
        self.session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.num_io_tensors = len(self.inputs) + len(self.outputs)
        self.dtypes = dict.fromkeys(self.inputs + self.outputs, DataType.FLOAT)
        self.output_shapes: dict[str, list[int]] = {}
        """Tests set a shape with -1 here for an output whose shape depends on the data."""

    def get_tensor_name(self, index: int) -> str:
        return (self.inputs + self.outputs)[index]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return TensorIOMode.INPUT if name in self.inputs else TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name: str) -> DataType:
        return self.dtypes[name]

    def get_tensor_profile_shape(self, name: str, profile: int) -> list[Dims]:
        return [Dims(shape) for shape in self.header["profile"][name]]

    def create_execution_context(self) -> Context:
        return Context(self)

    def create_engine_inspector(self) -> Inspector:
        return Inspector(self)


class Context:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.shapes: dict[str, list[int]] = {}
        self.addresses: dict[str, int] = {}

    def set_input_shape(self, name: str, shape: Any) -> bool:
        low, _, high = self.engine.header["profile"][name]
        if not all(a <= s <= b for a, s, b in zip(low, shape, high, strict=True)):
            return False
        self.shapes[name] = list(shape)
        return True

    def get_tensor_shape(self, name: str) -> Dims:
        if name in self.engine.inputs:
            return Dims(self.shapes[name])
        if name in self.engine.output_shapes:
            return Dims(self.engine.output_shapes[name])
        feeds = {n: np.zeros(self.shapes[n], np.float32) for n in self.engine.inputs}
        return Dims(self.engine.session.run([name], feeds)[0].shape)

    def set_tensor_address(self, name: str, address: int) -> bool:
        if name not in self.engine.dtypes or address % 256:
            return False
        self.addresses[name] = address
        return True

    def execute_async_v3(self, stream: int) -> bool:
        if CUDART.capturing:
            CUDART.recorded.append(self._run)
        else:
            self._run()
        return True

    def _run(self) -> None:
        feeds = {n: _read(self.addresses[n], tuple(self.shapes[n]), np.float32) for n in self.engine.inputs}
        for name, value in zip(
            self.engine.outputs, self.engine.session.run(self.engine.outputs, feeds), strict=True
        ):
            if self.engine.header["precision"] == "fp16":
                value = value.astype(np.float16).astype(np.float32)
            _write(self.addresses[name], value)


class Runtime:
    def __init__(self, logger: ILogger) -> None:
        self.logger = logger

    def deserialize_cuda_engine(self, data: bytes) -> Engine | None:
        data = bytes(data)
        if not data.startswith(MAGIC):
            self.logger.log(Severity.ERROR, "Serialization assertion failed: magic tag does not match")  # type: ignore[attr-defined]
            return None
        header, model = data[len(MAGIC) :].split(b"\n", 1)
        return Engine(json.loads(header), model)


def tensorrt_module(version: str) -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version  # type: ignore[attr-defined]
    names = {
        "DataType": DataType,
        "TensorIOMode": TensorIOMode,
        "LayerType": LayerType,
        "ILogger": ILogger,
        "Dims": Dims,
        "Builder": Builder,
        "OnnxParser": OnnxParser,
        "Runtime": Runtime,
        "ITimingCache": TimingCache,
        "IBuilderConfig": BuilderConfig,
        "NetworkDefinitionCreationFlag": types.SimpleNamespace(STRONGLY_TYPED=1),
        "ProfilingVerbosity": types.SimpleNamespace(DETAILED=2),
        "MemoryPoolType": types.SimpleNamespace(WORKSPACE=0),
        "LayerInformationFormat": types.SimpleNamespace(JSON=1),
    }
    if int(version.split(".")[0]) < 11:
        names["BuilderFlag"] = types.SimpleNamespace(FP16=0, INT8=1, PREFER_PRECISION_CONSTRAINTS=2)
        names["IInt8EntropyCalibrator2"] = IInt8EntropyCalibrator2
        names["IInt8MinMaxCalibrator"] = IInt8MinMaxCalibrator
    else:
        names["BuilderFlag"] = types.SimpleNamespace()
    for name, value in names.items():
        setattr(trt, name, value)
    return trt


TRT_MODULES = [
    "trtq.trt.builder",
    "trtq.trt.runner",
    "trtq.trt.logger",
    "trtq.trt.version",
    "trtq.trt.calibrators",
    "trtq.trt.feed",
]


def install(
    monkeypatch: pytest.MonkeyPatch, version: str = "10.16.1.11", cudart: bool = True
) -> types.ModuleType:
    """Put the stand-in in place of tensorrt, pycuda and libcudart (``cudart=False``: none found)."""
    from trtq.trt import cuda_graph

    MEMORY.clear()
    trt = tensorrt_module(version)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    for name, module in pycuda_modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    for name in TRT_MODULES:
        monkeypatch.delitem(sys.modules, name, raising=False)

    if cudart:
        monkeypatch.setattr(cuda_graph, "load_cudart", lambda candidates: CUDART)
    else:  # trtq's own search, finding no library
        monkeypatch.setattr(cuda_graph, "cudart_candidates", lambda *args, **kwargs: [])
    return trt
