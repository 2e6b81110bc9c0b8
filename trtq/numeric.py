"""The numeric rules INT8 rests on, stated once: the INT8 range, float32's limits, and how a
threshold or a weight channel becomes a scale. A leaf: it imports nothing of trtq."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

INT8_MAX = 127
"""Symmetric INT8 (TensorRT's): values -127..127, scale = amax / 127."""
QUANT_LEVELS = INT8_MAX + 1
"""Levels of |x| the entropy search merges bins into: 128, one per non-negative INT8 value."""
FLOAT32_MAX = float(np.finfo(np.float32).max)
FLOAT32_TINY = float(np.finfo(np.float32).tiny)
"""float32's largest value and its smallest normal one, as Python floats (compared without a cast)."""


def scale_from_amax(amax: float | np.float32) -> np.float32:
    """Per-tensor scale as TensorRT stores it: amax / 127 in float32."""
    return np.float32(np.float32(amax) / np.float32(INT8_MAX))


def channel_scales(amax: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Per-channel weight scales from each channel's max |w|: amax / 127, and 1 for an all-zero
    channel (a scale must be > 0). The dtype of ``amax`` is kept."""
    return np.where(amax > 0, amax / INT8_MAX, 1.0).astype(amax.dtype)


def round_to_int8(values: npt.NDArray[Any], scales: npt.NDArray[Any]) -> npt.NDArray[np.int8]:
    """``values / scales`` rounded to nearest even and clipped to -127..127 (``scales`` broadcast)."""
    rounded: npt.NDArray[np.int8] = np.clip(np.rint(values / scales), -INT8_MAX, INT8_MAX).astype(np.int8)
    return rounded
