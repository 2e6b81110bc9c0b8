"""The TensorRT version at run time, and what it supports."""

from __future__ import annotations

import tensorrt as trt

from trtq.errors import TrtqError
from trtq.trt_versions import version_name


def trt_version() -> str:
    """major.minor.patch of the imported TensorRT (``__version__`` also carries a build number)."""
    return version_name(trt.__version__)


def trt_major() -> int:
    return int(trt.__version__.split(".")[0])


def require_supported() -> None:
    """trtq drives the TensorRT 10/11 API (named I/O tensors, execute_async_v3, strongly typed networks)."""
    if trt_major() < 10:
        raise TrtqError(f"TensorRT {trt.__version__} is too old: trtq supports TensorRT 10.x and 11.x")
