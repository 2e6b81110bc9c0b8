"""CUDA graph capture of one enqueue, through the CUDA runtime API (pycuda has no stream capture).

Uses libcudart's documented C entry points, the same way Polygraphy talks to CUDA through ctypes.
``cudaGraphInstantiate`` is called with the three-argument signature it has since CUDA 12 (CUDA 11's
takes five), so a runtime whose ``cudaRuntimeGetVersion`` is below 12000 is passed over.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import importlib.metadata
import site
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from trtq.errors import TrtqError

_CAPTURE_MODE_THREAD_LOCAL = 1
MIN_RUNTIME = 12000
"""cudaRuntimeGetVersion's 1000 * major + 10 * minor: CUDA 12.0, the first with the 3-argument call."""

# Where pip's CUDA runtime wheels put libcudart: nvidia-cuda-runtime-cu12 and nvidia-cuda-runtime (13).
_WHEEL_LIBRARIES = {12: "nvidia/cuda_runtime/lib/libcudart.so.12", 13: "nvidia/cu13/lib/libcudart.so.13"}


class GraphCaptureError(TrtqError):
    """No CUDA graph could be made (no usable libcudart, or capturing the enqueue failed); the
    stream is usable for plain enqueues."""


def tensorrt_cuda_major() -> int | None:
    """The CUDA major the installed pip TensorRT was built for (tensorrt-cu12 / tensorrt-cu13 and
    their -libs), or None when that cannot be told (NVIDIA's containers, or both installed)."""
    majors = set()
    for major in _WHEEL_LIBRARIES:
        for suffix in ("", "-libs", "-bindings"):
            with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                importlib.metadata.version(f"tensorrt-cu{major}{suffix}")
                majors.add(major)
    return majors.pop() if len(majors) == 1 else None


def site_packages() -> list[str]:
    """Only the installation's site-packages directories: never the current directory or sys.path."""
    return [*site.getsitepackages(), site.getusersitepackages()]


def cudart_candidates(search_dirs: Iterable[str] | None = None, prefer: int | None = None) -> list[str]:
    """Library names and wheel paths to try, in order: TensorRT's own CUDA major first when it is
    known (``prefer``), else the toolkit's unversioned name, then 13, then 12."""
    dirs = list(dict.fromkeys(d for d in (site_packages() if search_dirs is None else search_dirs) if d))
    first = prefer if prefer in _WHEEL_LIBRARIES else None
    majors = [13, 12] if first is None else [first, *(m for m in (13, 12) if m != first)]

    def of(major: int) -> list[str]:
        return [f"libcudart.so.{major}", *(str(Path(d) / _WHEEL_LIBRARIES[major]) for d in dirs)]

    names = [] if first is None else of(first)
    names.append("libcudart.so")
    found = ctypes.util.find_library("cudart")
    if found:
        names.append(found)
    for major in majors:
        names += of(major)
    return list(dict.fromkeys(names))


def runtime_version(lib: Any) -> int:
    version = ctypes.c_int(0)
    if lib.cudaRuntimeGetVersion(ctypes.byref(version)) != 0:
        return 0
    return version.value


def load_cudart(candidates: Iterable[str], loader: Callable[[str], Any] = ctypes.CDLL) -> Any:
    """The first candidate that loads and is a CUDA 12+ runtime; a GraphCaptureError naming what was
    found (bench then times plain enqueues)."""
    passed_over = []
    for name in candidates:
        if "/" in name and not Path(name).is_file():
            continue
        try:
            lib = loader(name)
        except OSError:
            continue
        version = runtime_version(lib)
        if version >= MIN_RUNTIME:
            with contextlib.suppress(AttributeError):  # a ctypes function: say it returns a C string
                lib.cudaGetErrorString.restype = ctypes.c_char_p
            return lib
        what = f"CUDA {version // 1000}.{version % 1000 // 10}" if version else "of unknown version"
        passed_over.append(f"{name} is {what}")
    found = f" ({'; '.join(passed_over)})" if passed_over else ""
    raise GraphCaptureError(
        "CUDA graphs need the CUDA 12 or 13 runtime (libcudart.so.12 or .13), found neither in the "
        f"toolkit's library path nor in a nvidia-cuda-runtime pip wheel{found}; "
        "set benchmark.cuda_graph: false"
    )


class CudaGraph:
    """Capture ``enqueue`` on ``stream`` once; ``launch`` replays it; ``close`` frees the graph."""

    def __init__(self, stream_handle: int, enqueue: Callable[[], object], lib: Any = None) -> None:
        self._lib = lib if lib is not None else load_cudart(cudart_candidates(prefer=tensorrt_cuda_major()))
        self._stream = ctypes.c_void_p(stream_handle)
        self._exec: ctypes.c_void_p | None = None
        graph = ctypes.c_void_p()
        self._check(
            self._lib.cudaStreamBeginCapture(self._stream, _CAPTURE_MODE_THREAD_LOCAL), "begin capture"
        )
        try:
            enqueue()
        except TrtqError as exc:
            # As trtexec's endCaptureOnError: end the capture so the stream is usable again, free a
            # graph if one came back, clear the error state; report the enqueue's own error first.
            status = self._lib.cudaStreamEndCapture(self._stream, ctypes.byref(graph))
            if status == 0 and graph.value:
                self._lib.cudaGraphDestroy(graph)
            self._lib.cudaGetLastError()
            ended = "ended" if status == 0 else f"ended with {error_name(self._lib, status)}"
            raise GraphCaptureError(f"{exc} while capturing a CUDA graph (the capture {ended})") from exc
        except BaseException:
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

    def _check(self, status: int, what: str) -> None:
        if status != 0:
            kind = GraphCaptureError if what in ("begin capture", "end capture", "instantiate") else TrtqError
            raise kind(f"CUDA graph {what} failed: {error_name(self._lib, status)}")


def error_name(lib: Any, status: int) -> str:
    """``cudaGetErrorString``'s text with the code, e.g. 'operation not permitted when stream is
    capturing (cudaError 900)'."""
    text = lib.cudaGetErrorString(status)
    if isinstance(text, bytes):
        return f"{text.decode(errors='replace')} (cudaError {status})"
    return f"cudaError {status}"
