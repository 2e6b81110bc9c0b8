"""What trtq finds installed: versions, the GPU stack, and which commands can therefore run."""

from __future__ import annotations

import importlib
import platform
from dataclasses import dataclass


@dataclass(frozen=True)
class Component:
    name: str
    version: str | None
    """None: missing or unusable (``detail`` says why)."""
    detail: str = ""

    @property
    def found(self) -> bool:
        return self.version is not None

    def to_json(self) -> dict[str, str | None]:
        return {"name": self.name, "version": self.version, "detail": self.detail}


CPU_PACKAGES = {
    "NumPy": "numpy",
    "ONNX": "onnx",
    "ONNX Runtime": "onnxruntime",
    "Numba": "numba",
    "OpenCV": "cv2",
}
"""Display name -> module: everything the CPU path (calibrate, qdq, compare, ...) imports."""

CPU_COMMANDS = (
    "calibrate",
    "crosscheck",
    "qdq",
    "compare",
    "sensitivity",
    "tune",
    "report",
    "cache",
    "bench --backend onnxruntime",
)
GPU_COMMANDS = ("build", "bench --backend tensorrt")


def module_component(name: str, module: str) -> Component:
    try:
        imported = importlib.import_module(module)
    except Exception as exc:  # an ImportError, or a broken install failing inside its own import
        return Component(name, None, f"cannot import {module}: {type(exc).__name__}: {exc}")
    return Component(name, str(getattr(imported, "__version__", "unknown version")))


def cpu_stack() -> list[Component]:
    python = Component("Python", platform.python_version(), platform.python_implementation())
    return [python, *(module_component(name, module) for name, module in CPU_PACKAGES.items())]


def cuda_version(number: int) -> str:
    """cudaDriverGetVersion / cudaRuntimeGetVersion's 1000 * major + 10 * minor -> 'major.minor'."""
    return f"{number // 1000}.{number % 1000 // 10}"


@dataclass(frozen=True)
class GpuStack:
    tensorrt: Component
    pycuda: Component
    driver: Component
    runtime: Component
    gpu: Component

    @property
    def components(self) -> list[Component]:
        return [self.tensorrt, self.pycuda, self.driver, self.runtime, self.gpu]

    @property
    def usable(self) -> bool:
        """Engines can be built and run (a missing libcudart only turns CUDA graphs off)."""
        return self.tensorrt.found and self.pycuda.found and self.driver.found and self.gpu.found

    @property
    def trt_major(self) -> int | None:
        return int(self.tensorrt.version.split(".")[0]) if self.tensorrt.version else None


def gpu_stack() -> GpuStack:
    tensorrt = module_component("TensorRT", "tensorrt")
    if tensorrt.found and not hasattr(importlib.import_module("tensorrt"), "Builder"):
        tensorrt = Component("TensorRT", None, "the 'tensorrt' module here has no Builder: not TensorRT")
    pycuda = module_component("pycuda", "pycuda.driver")
    if pycuda.found:
        pycuda = Component("pycuda", str(getattr(importlib.import_module("pycuda"), "VERSION_TEXT", "found")))
    driver = Component("CUDA driver", None, "needs pycuda")
    gpu = Component("GPU", None, "needs pycuda and a CUDA driver")
    if pycuda.found:
        driver, gpu = _driver_and_gpu()
    return GpuStack(tensorrt, pycuda, driver, _runtime(), gpu)


def _driver_and_gpu() -> tuple[Component, Component]:
    import pycuda.driver as cuda

    try:
        cuda.init()
        driver = Component("CUDA driver", cuda_version(cuda.get_driver_version()))
    except Exception as exc:  # pycuda's own errors without a driver (no libcuda, no device node)
        return (
            Component("CUDA driver", None, f"{type(exc).__name__}: {exc}"),
            Component("GPU", None, "no usable CUDA driver"),
        )
    try:
        if cuda.Device.count() == 0:
            return driver, Component("GPU", None, "the CUDA driver sees no device")
        from trtq.trt.device import primary_device

        device = primary_device()
        major, minor = device.compute_capability()
        return driver, Component("GPU", str(device.name()), f"compute capability {major}.{minor}")
    except Exception as exc:
        return driver, Component("GPU", None, f"{type(exc).__name__}: {exc}")


def _runtime() -> Component:
    """The libcudart trtq's CUDA graphs would use (bench falls back to plain enqueues without it)."""
    from trtq.trt.cuda_graph import (
        GraphCaptureError,
        cudart_candidates,
        load_cudart,
        runtime_version,
        tensorrt_cuda_major,
    )

    try:
        lib = load_cudart(cudart_candidates(prefer=tensorrt_cuda_major()))
    except GraphCaptureError as exc:
        return Component("CUDA runtime", None, f"{exc} (bench times plain enqueues without it)")
    return Component("CUDA runtime", cuda_version(runtime_version(lib)))


def runnable_commands(cpu: list[Component], gpu: GpuStack) -> dict[str, str | None]:
    """Command -> None if it can run here, else what it lacks."""
    missing_cpu = [c.name for c in cpu if not c.found]
    cpu_reason = f"missing {', '.join(missing_cpu)}" if missing_cpu else None
    missing_gpu = [c.name for c in (gpu.tensorrt, gpu.pycuda, gpu.driver, gpu.gpu) if not c.found]
    gpu_reason = cpu_reason or (f"missing {', '.join(missing_gpu)}" if missing_gpu else None)
    return {
        **dict.fromkeys(CPU_COMMANDS, cpu_reason),
        **dict.fromkeys(GPU_COMMANDS, gpu_reason),
    }
