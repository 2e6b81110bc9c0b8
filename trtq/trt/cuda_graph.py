"""CUDA graph capture of one enqueue, through the CUDA runtime API (pycuda has no stream capture).

Uses libcudart's documented C entry points, the same way Polygraphy talks to CUDA through ctypes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable

from trtq.errors import TrtqError

_CAPTURE_MODE_THREAD_LOCAL = 1


def _cudart() -> ctypes.CDLL:
    for name in ("libcudart.so", "libcudart.so.12", ctypes.util.find_library("cudart")):
        if name:
            try:
                return ctypes.CDLL(name)
            except OSError:
                continue
    raise TrtqError("CUDA graphs need libcudart, which was not found")


class CudaGraph:
    """Capture ``enqueue`` on ``stream`` once; ``launch`` replays it."""

    def __init__(self, stream_handle: int, enqueue: Callable[[], object]) -> None:
        self._lib = _cudart()
        self._stream = ctypes.c_void_p(stream_handle)
        graph = ctypes.c_void_p()
        self._exec = ctypes.c_void_p()
        self._check(
            self._lib.cudaStreamBeginCapture(self._stream, _CAPTURE_MODE_THREAD_LOCAL), "begin capture"
        )
        try:
            enqueue()
        finally:
            self._check(self._lib.cudaStreamEndCapture(self._stream, ctypes.byref(graph)), "end capture")
        self._check(
            self._lib.cudaGraphInstantiate(ctypes.byref(self._exec), graph, ctypes.c_ulonglong(0)),
            "instantiate",
        )
        self._check(self._lib.cudaGraphDestroy(graph), "destroy graph")

    def launch(self) -> None:
        self._check(self._lib.cudaGraphLaunch(self._exec, self._stream), "launch")

    @staticmethod
    def _check(status: int, what: str) -> None:
        if status != 0:
            raise TrtqError(f"CUDA graph {what} failed with cudaError {status}")
