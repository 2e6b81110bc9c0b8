"""TensorRT backend for ``trtq bench``: trtexec's per-query phases timed with CUDA events.

Each query copies the inputs host-to-device from pinned buffers, enqueues the engine (or
launches a captured CUDA graph) and copies the outputs back, with events between the phases.
Enqueue time is host wall time around the enqueue call. Queries run one at a time on one stream
(trtexec keeps two in flight by default), so throughput here is a conservative figure.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from math import prod
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import tensorrt as trt

from trtq.config.loader import LoadedConfig
from trtq.errors import TrtqError
from trtq.runner.timing import QueryTimes
from trtq.trt.cuda_graph import CudaGraph, GraphCaptureError
from trtq.trt.logger import TrtLogger, warn
from trtq.trt.version import require_supported


class TensorRTBackend:
    name = "tensorrt"

    def __init__(
        self, engine_path: Path, config: LoadedConfig | None, cuda_graph: bool, spin_wait: bool
    ) -> None:
        import pycuda.autoprimaryctx  # noqa: F401
        import pycuda.driver as cuda

        require_supported()
        if not engine_path.is_file():
            raise TrtqError(f"{engine_path}: engine not found (build it with trtq build)")
        self._cuda = cuda
        self._logger = TrtLogger()
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self._engine is None:
            raise TrtqError(f"{engine_path}: TensorRT {trt.__version__} cannot load this engine")
        self._context = self._engine.create_execution_context()
        self._stream = cuda.Stream()
        flags = 0 if spin_wait else cuda.event_flags.BLOCKING_SYNC
        self._events = [cuda.Event(flags) for _ in range(4)]
        self._inputs: list[tuple[Any, Any]] = []
        self._outputs: list[tuple[Any, Any]] = []
        self._output_names: list[str] = []
        self._output_bf16: list[bool] = []
        self._input_bf16: list[bool] = []
        self.batch_size = 1
        self.input_shapes: dict[str, list[int]] = {}
        shapes = {spec.name: list(spec.opt_shape) for spec in config.spec.inputs} if config else {}
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        for name in names:
            if self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                shape = shapes.get(name) or _dims(self._engine.get_tensor_profile_shape(name, 0)[1])
                set_input_shape(self._context, self._engine, name, shape)
                self.batch_size = shape[0]
                self.input_shapes[name] = list(shape)
        rng = np.random.default_rng(0)
        for name in names:
            dims = tuple(_dims(self._context.get_tensor_shape(name)))
            check_io(engine_path, name, self._engine.get_tensor_dtype(name), dims)
            dtype = _numpy_dtype(self._engine.get_tensor_dtype(name))
            host = cuda.pagelocked_empty(dims, dtype=dtype)
            device = cuda.mem_alloc(max(1, prod(dims) * dtype.itemsize))
            # set_tensor_address returns False (it does not raise) for an unknown name or a
            # misaligned address (pyCore.cpp binds IExecutionContext::setTensorAddress as is).
            if not self._context.set_tensor_address(name, int(device)):
                raise TrtqError(f"{engine_path}: TensorRT refused the device address for tensor '{name}'")
            bf16 = self._engine.get_tensor_dtype(name) == trt.DataType.BF16
            if self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                # trtexec's default input data: uniform in [-1, 1]
                host[...] = to_host_dtype(rng.uniform(-1, 1, size=dims), dtype, bf16)
                self._inputs.append((host, device))
                self._input_bf16.append(bf16)
            else:
                self._outputs.append((host, device))
                self._output_names.append(name)
                self._output_bf16.append(bf16)
        self._enqueue()  # first run: lazy initialisation outside the timings
        self._stream.synchronize()
        self.warnings: list[str] = []
        self._graph = self._capture() if cuda_graph else None

    @property
    def uses_cuda_graph(self) -> bool:
        """Queries launch a captured CUDA graph (False: plain enqueues, by choice or after a fallback)."""
        return self._graph is not None

    def _capture(self) -> CudaGraph | None:
        """A CUDA graph of one enqueue; when capturing fails, plain enqueues with a warning, as trtexec
        does (some engines cannot be captured)."""
        try:
            return CudaGraph(self._stream.handle, self._enqueue)
        except GraphCaptureError as exc:
            message = f"CUDA graph capture failed ({exc}); timing plain enqueues instead (cuda_graph off)"
            warn(message)
            self.warnings.append(message)
            self._enqueue()  # the stream and context still work without the graph
            self._stream.synchronize()
            return None

    def _enqueue(self) -> None:
        if not self._context.execute_async_v3(self._stream.handle):
            raise TrtqError("TensorRT execute_async_v3 failed")

    def query(self) -> QueryTimes:
        h2d_start, h2d_end, compute_end, d2h_end = self._events
        h2d_start.record(self._stream)
        for host, device in self._inputs:
            self._cuda.memcpy_htod_async(device, host, self._stream)
        h2d_end.record(self._stream)
        started = time.perf_counter()
        if self._graph is not None:
            self._graph.launch()
        else:
            self._enqueue()
        enqueue_ms = (time.perf_counter() - started) * 1e3
        compute_end.record(self._stream)
        for host, device in self._outputs:
            self._cuda.memcpy_dtoh_async(host, device, self._stream)
        d2h_end.record(self._stream)
        d2h_end.synchronize()
        return QueryTimes(
            compute_ms=compute_end.time_since(h2d_end),
            h2d_ms=h2d_end.time_since(h2d_start),
            d2h_ms=d2h_end.time_since(compute_end),
            enqueue_ms=enqueue_ms,
        )

    def infer(self, feed: Mapping[str, npt.NDArray[np.float32]]) -> dict[str, npt.NDArray[np.float32]]:
        """Run one feed (every input by name, at the shapes the context was set up with) and return
        every output by name: the runner face ONNX Runtime's runner has too (trtq/model/runner.py)."""
        if set(feed) != set(self.input_shapes):
            raise TrtqError(f"the engine takes inputs {sorted(self.input_shapes)}, got {sorted(feed)}")
        for name, (host, device), bf16 in zip(self.input_shapes, self._inputs, self._input_bf16, strict=True):
            batch = feed[name]
            if tuple(batch.shape) != tuple(host.shape):
                raise TrtqError(
                    f"input '{name}': shape {list(batch.shape)} differs from the engine's {list(host.shape)}"
                )
            np.copyto(host, to_host_dtype(batch, host.dtype, bf16))
            self._cuda.memcpy_htod_async(device, host, self._stream)
        self._enqueue()
        for out_host, out_device in self._outputs:
            self._cuda.memcpy_dtoh_async(out_host, out_device, self._stream)
        self._stream.synchronize()
        return {
            name: bf16_to_float32(out_host) if bf16 else np.asarray(out_host, dtype=np.float32).copy()
            for name, (out_host, _), bf16 in zip(
                self._output_names, self._outputs, self._output_bf16, strict=True
            )
        }


def set_input_shape(
    context: trt.IExecutionContext, engine: trt.ICudaEngine, name: str, shape: list[int]
) -> None:
    """``set_input_shape`` returns False (it does not raise) for a shape outside the profile."""
    if not context.set_input_shape(name, shape):
        low, opt, high = (_dims(dims) for dims in engine.get_tensor_profile_shape(name, 0))
        raise TrtqError(
            f"input '{name}': shape {shape} is outside the engine's optimization profile 0 "
            f"(min {low}, opt {opt}, max {high}); give the config a shape within it or rebuild the engine"
        )


def check_io(engine_path: Path, name: str, dtype: trt.DataType, dims: tuple[int, ...]) -> None:
    """What bench and compare cannot feed or read: quantized I/O (the engine does not expose the
    scale that maps it to the model's floats) and a shape known only after running (a -1 from
    ``get_tensor_shape`` once every input shape is set: TensorRT then needs an IOutputAllocator)."""
    quantized = {trt.DataType.INT8: "INT8", trt.DataType.UINT8: "UINT8"}.get(dtype)
    if quantized is not None:
        raise TrtqError(
            f"{engine_path}: tensor '{name}' is {quantized}: trtq bench and compare feed and read "
            "float data and the engine does not carry the scale of quantized I/O; build it with "
            "float inputs and outputs (trtq build keeps the model's I/O types)"
        )
    if any(size < 0 for size in dims):
        raise TrtqError(
            f"{engine_path}: tensor '{name}' has the data-dependent shape {list(dims)} (its size is "
            "known only after running); trtq bench and compare need engines whose output shapes "
            "follow from the input shapes"
        )


def bf16_to_float32(words: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    """bfloat16 is the upper half of a float32: shift each raw 16-bit word up and reinterpret the
    bits (converting the integers numerically would turn 0x3f80, i.e. 1.0, into 16256.0)."""
    widened = np.asarray(words, dtype=np.uint16).astype(np.uint32) << np.uint32(16)
    return widened.view(np.float32)


def float32_to_bf16(values: npt.ArrayLike) -> npt.NDArray[np.uint16]:
    """The raw bfloat16 words of ``values``: the upper 16 bits of each float32, rounded to nearest
    even on the 16 bits dropped (what a float->bf16 cast does); NaN stays a quiet NaN."""
    bits = np.asarray(values, dtype=np.float32).view(np.uint32)
    lsb = (bits >> np.uint32(16)) & np.uint32(1)
    rounded = (bits + np.uint32(0x7FFF) + lsb) >> np.uint32(16)  # wraps only past NaN, handled below
    nan = np.isnan(bits.view(np.float32))
    words = np.where(nan, (bits >> np.uint32(16)) | np.uint32(0x0040), rounded)
    return words.astype(np.uint16)


def to_host_dtype(values: npt.ArrayLike, dtype: np.dtype[Any], bf16: bool) -> npt.NDArray[Any]:
    """``values`` as an input buffer holds them: bfloat16 as its bit pattern, not a numeric uint16."""
    return float32_to_bf16(values) if bf16 else np.asarray(values).astype(dtype, copy=False)


def _dims(dims: trt.Dims) -> list[int]:
    return [int(dims[i]) for i in range(len(dims))]


def _numpy_dtype(dtype: trt.DataType) -> np.dtype[Any]:
    """Host buffer types; bfloat16 has no NumPy type, so its buffer holds the raw 16-bit words."""
    table = {
        trt.DataType.FLOAT: np.float32,
        trt.DataType.HALF: np.float16,
        trt.DataType.BF16: np.uint16,
        trt.DataType.INT8: np.int8,
        trt.DataType.UINT8: np.uint8,
        trt.DataType.INT32: np.int32,
        trt.DataType.INT64: np.int64,
        trt.DataType.BOOL: np.bool_,
    }
    if dtype not in table:
        raise TrtqError(f"engine I/O type {dtype} is not supported by trtq bench")
    return np.dtype(table[dtype])


def tensorrt_backend(engine_path: Path, config: LoadedConfig | None) -> TensorRTBackend:
    section = config.spec.benchmark if config is not None else None
    return TensorRTBackend(
        engine_path,
        config,
        cuda_graph=section.cuda_graph if section else False,
        spin_wait=section.spin_wait if section else False,
    )
