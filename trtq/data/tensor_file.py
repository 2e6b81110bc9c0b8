"""Preprocessed tensors named in an image list (``.npy``): for pipelines the preprocess section cannot
express. Each holds one item of the network input, exactly as the network takes it; the preprocess
section does not apply to it."""

from __future__ import annotations

import io

import numpy as np

from trtq.data.image_list import ImageEntry
from trtq.data.listed_file import BadImageError, read_listed_file
from trtq.data.preprocess import FloatArray

_MAGIC = b"\x93NUMPY"


def load_tensor(entry: ImageEntry, shape: tuple[int, ...], layout: str) -> FloatArray:
    """The float32 array in ``entry`` if it has ``shape`` (one input item in ``layout``) and only finite
    values; anything else a BadImageError naming the list file and line. Never unpickles."""
    data = read_listed_file(entry, "tensor")
    if not data.startswith(_MAGIC):
        raise BadImageError(entry, "not a .npy file (no NumPy array header)")
    try:
        array = np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        if "Object arrays" in str(exc):
            raise BadImageError(
                entry, "holds Python objects (an object array); save a float32 array"
            ) from None
        raise BadImageError(entry, f"not a readable .npy array: {exc}") from None
    if array.dtype.kind != "f" or array.dtype.itemsize != 4:
        raise BadImageError(entry, f"has dtype {array.dtype}, expected float32 (the network's input type)")
    if array.shape != shape:
        raise BadImageError(
            entry,
            f"has shape {list(array.shape)}, expected {list(shape)} (one item of the input, {layout} layout)",
        )
    finite = np.isfinite(array)
    if not finite.all():
        raise BadImageError(entry, f"has {int(finite.size - finite.sum())} NaN or infinite values")
    return np.ascontiguousarray(array, dtype=np.float32)
