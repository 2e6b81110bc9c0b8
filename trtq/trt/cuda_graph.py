"""CUDA graph capture of one enqueue, through the CUDA runtime API (pycuda has no stream capture).

Uses libcudart's documented C entry points, the same way Polygraphy talks to CUDA through ctypes.
``cudaGraphInstantiate`` is called with CUDA 12's three-argument signature, so only CUDA 12 and
13 runtimes are looked for.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import site
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from trtq.errors import TrtqError

_CAPTURE_MODE_THREAD_LOCAL = 1

# Where pip's CUDA runtime wheels put libcudart: nvidia-cuda-runtime-cu12 and nvidia-cuda-runtime (13).
_WHEEL_LIBRARIES = ("nvidia/cuda_runtime/lib/libcudart.so.12", "nvidia/cu13/lib/libcudart.so.13")


def cudart_candidates(search_dirs: Iterable[str] | None = None) -> list[str]:
    """Toolkit and system names first, then the pip wheels' files under each site-packages dir."""
    names = ["libcudart.so", "libcudart.so.13", "libcudart.so.12"]
    found = ctypes.util.find_library("cudart")
    if found:
        names.append(found)
    if search_dirs is None:
        search_dirs = [*site.getsitepackages(), site.getusersitepackages(), *sys.path]
    for directory in dict.fromkeys(d for d in search_dirs if d):
        names.extend(str(Path(directory) / relative) for relative in _WHEEL_LIBRARIES)
    return list(dict.fromkeys(names))


def _cudart() -> ctypes.CDLL:
    candidates = cudart_candidates()
    for name in candidates:
        if "/" in name and not Path(name).is_file():
            continue
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    raise TrtqError(
        "CUDA graphs need the CUDA runtime (libcudart.so.12 or .13), found neither in the toolkit's "
        "library path nor in a nvidia-cuda-runtime pip wheel; set benchmark.cuda_graph: false"
    )


class CudaGraph:
    """Capture ``enqueue`` on ``stream`` once; ``launch`` replays it; ``close`` frees the graph."""

    def __init__(self, stream_handle: int, enqueue: Callable[[], object], lib: Any = None) -> None:
        self._lib = lib if lib is not None else _cudart()
        self._stream = ctypes.c_void_p(stream_handle)
        self._exec: ctypes.c_void_p | None = None
        graph = ctypes.c_void_p()
        self._check(
            self._lib.cudaStreamBeginCapture(self._stream, _CAPTURE_MODE_THREAD_LOCAL), "begin capture"
        )
        try:
            enqueue()
        except BaseException:
            # End the capture so the stream is usable again, but report the enqueue's own error:
            # the capture's status (usually "invalidated") would only hide it.
            if self._lib.cudaStreamEndCapture(self._stream, ctypes.byref(graph)) == 0 and graph.value:
                self._lib.cudaGraphDestroy(graph)
            raise
        self._check(self._lib.cudaStreamEndCapture(self._stream, ctypes.byref(graph)), "end capture")
        executable = ctypes.c_void_p()
        try:
            self._check(
                self._lib.cudaGraphInstantiate(ctypes.byref(executable), graph, ctypes.c_ulonglong(0)),
                "instantiate",
            )
        finally:
            self._lib.cudaGraphDestroy(graph)  # the executable graph does not need it
        self._exec = executable

    def launch(self) -> None:
        if self._exec is None:
            raise TrtqError("CUDA graph launched after close()")
        self._check(self._lib.cudaGraphLaunch(self._exec, self._stream), "launch")

    def close(self) -> None:
        """Destroy the executable graph (cudaGraphExecDestroy); safe to call twice."""
        executable, self._exec = self._exec, None
        if executable is not None:
            self._check(self._lib.cudaGraphExecDestroy(executable), "exec destroy")

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter shutdown there is no one to tell
            self.close()

    @staticmethod
    def _check(status: int, what: str) -> None:
        if status != 0:
            raise TrtqError(f"CUDA graph {what} failed with cudaError {status}")
