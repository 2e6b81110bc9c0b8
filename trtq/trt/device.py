"""Device memory for calibration, behind a small protocol so contract tests can use host memory."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import numpy.typing as npt


class DeviceMemory(Protocol):
    def allocate(self, nbytes: int) -> int:
        """Allocate device memory that lives as long as this object; return its address."""

    def pinned_empty(self, shape: tuple[int, ...]) -> npt.NDArray[np.float32]:
        """A page-locked float32 host array (fast, asynchronous-capable transfers)."""

    def copy_to_device(self, address: int, host: npt.NDArray[np.float32]) -> None:
        """Synchronous host-to-device copy of ``host`` to ``address``."""


class PycudaMemory:
    """pycuda allocations, kept on the object so TensorRT's pointers stay valid until it is dropped.

    Uses the device's primary context (pycuda.autoprimaryctx), the one TensorRT's runtime API uses.
    """

    def __init__(self) -> None:
        import pycuda.autoprimaryctx  # noqa: F401  (retains and pushes the primary context)
        import pycuda.driver as cuda

        self._cuda = cuda
        self._allocations: list[object] = []

    def allocate(self, nbytes: int) -> int:
        allocation = self._cuda.mem_alloc(nbytes)
        self._allocations.append(allocation)
        return int(allocation)

    def pinned_empty(self, shape: tuple[int, ...]) -> npt.NDArray[np.float32]:
        array: npt.NDArray[np.float32] = self._cuda.pagelocked_empty(shape, dtype=np.float32)
        return array

    def copy_to_device(self, address: int, host: npt.NDArray[np.float32]) -> None:
        self._cuda.memcpy_htod(address, host)

    def free(self) -> None:
        for allocation in self._allocations:
            allocation.free()  # type: ignore[attr-defined]
        self._allocations.clear()


def primary_device() -> Any:
    """The pycuda Device whose primary context pycuda.autoprimaryctx made current: the one builds
    and runs here use. pycuda's ``make_default_context`` picks it from ``CUDA_DEVICE`` (or
    ``~/.cuda_device``), so ``Device(0)`` may be another GPU."""
    import pycuda.autoprimaryctx as primary

    return primary.device


def gpu_name() -> str:
    return str(primary_device().name())


BF16_MIN_COMPUTE_CAPABILITY = (8, 0)
"""TensorRT runs BF16 only on GPUs of compute capability 8.0 and above (Ampere on): the TensorRT
backend of triton-inference-server states it (server PR #7310)."""


def bf16_unsupported() -> str | None:
    """Why the GPU builds and runs use cannot do BF16, or None when it can."""
    major, minor = primary_device().compute_capability()
    if (major, minor) >= BF16_MIN_COMPUTE_CAPABILITY:
        return None
    need = ".".join(map(str, BF16_MIN_COMPUTE_CAPABILITY))
    return (
        f"BF16 needs a GPU of compute capability {need} or above (TensorRT supports BF16 there only); "
        f"{gpu_name()} is {major}.{minor}"
    )
