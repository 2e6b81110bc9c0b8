"""Per-channel INT8 weights chosen for the layer's output, not for the weights themselves, and written
into the Q/DQ model trtq.qdq.export made (its initializer names).

TensorRT dequantizes exactly the INT8 values and per-channel scales a Q/DQ model holds, so both can
be picked to minimise the layer's output error on the tuning images. With ``S`` the input patches'
second moment (or covariance, when bias correction removes the mean error), channel ``o`` of a
weight change ``d`` costs ``d @ S @ d``. Three choices are measured per output channel with that cost
and the cheapest kept:

- round to nearest at the max-|w| scale (what a plain Q/DQ export does),
- round to nearest at a clipped scale (a few clipping ratios),
- sequential rounding with error feedback (GPTQ, Frantar et al. 2022, arXiv:2210.17323): columns are
  rounded one at a time and the rounding error is pushed onto the not yet rounded columns through
  the inverse of ``S``, which is the AdaRound objective solved greedily instead of by gradient descent.

Bias correction then moves the mean output error the chosen weights leave into the bias
(trtq/tune/bias.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import onnx
from onnx import numpy_helper

from trtq.model.edit import copy_model
from trtq.numeric import INT8_MAX, channel_scales, round_to_int8

CLIP_RATIOS = (1.0, 0.97, 0.94, 0.91, 0.88, 0.85, 0.8, 0.75)
BLOCK = 64
"""Columns rounded between two full updates of the rest (GPTQ's lazy batches: same result, faster)."""
ROWS_PER_COLUMN = 4
DAMPING = 0.01
"""Added to S's diagonal (times its mean) so the inverse exists when patches are few or constant."""

Float64 = npt.NDArray[np.float64]
Int8 = npt.NDArray[np.int8]


@dataclass
class QuantizedWeights:
    """[groups, out per group, k] INT8 values and [groups, out per group] scales."""

    values: Int8
    scales: Float64
    method: npt.NDArray[np.str_]
    """Per channel: 'nearest', 'clipped' or 'sequential'."""

    def dequantized(self) -> Float64:
        return self.values.astype(np.float64) * self.scales[..., None]


def max_scales(weights: Float64) -> Float64:
    """Per-channel max-|w| / 127 (plain export, TensorRT's implicit INT8); 1 for all-zero rows."""
    return channel_scales(np.abs(weights).max(axis=-1))


def round_nearest(weights: Float64, scales: Float64) -> Int8:
    return round_to_int8(weights, scales[..., None])


def output_error(delta: Float64, moment: Float64) -> Float64:
    """Per channel ``d @ S @ d``: the mean squared output change caused by a weight change ``d``."""
    error: Float64 = np.sum(np.matmul(delta, moment) * delta, axis=-1)
    return error


def sequential_round(weights: Float64, scales: Float64, moment: Float64) -> Int8:
    """GPTQ rounding of every channel (all groups at once): round a column, then move its error onto
    the remaining columns along the Cholesky factor of S's inverse."""
    k = weights.shape[-1]
    damped = moment + DAMPING * np.mean(np.diagonal(moment, axis1=1, axis2=2), axis=1)[
        :, None, None
    ] * np.eye(k)
    dead = np.diagonal(moment, axis1=1, axis2=2) <= 0
    damped[:, np.arange(k), np.arange(k)] = np.where(dead, 1.0, np.diagonal(damped, axis1=1, axis2=2))
    inverse_factor = np.linalg.cholesky(np.linalg.inv(damped)).transpose(0, 2, 1)  # upper, per group
    values = np.empty(weights.shape, dtype=np.int8)
    work = weights.copy()
    for start in range(0, k, BLOCK):
        end = min(start + BLOCK, k)
        block, factor = work[:, :, start:end].copy(), inverse_factor[:, start:end, start:end]
        errors = np.empty_like(block)
        for column in range(end - start):
            current = block[:, :, column]
            quantized = np.clip(np.rint(current / scales), -INT8_MAX, INT8_MAX)
            values[:, :, start + column] = quantized
            error = (current - quantized * scales) / factor[:, column, column][:, None]
            block[:, :, column:] -= error[:, :, None] * factor[:, None, column, column:]
            errors[:, :, column] = error
        # Columns past the block get the whole block's errors in one product (lazy batch updates).
        work[:, :, end:] -= np.matmul(errors, inverse_factor[:, start:end, end:])
    return values


def quantize_weights(
    weights: Float64, moment: Float64, rows: int, sequential: bool = True
) -> QuantizedWeights:
    """The cheapest of nearest / clipped / sequential rounding, per output channel, by ``output_error``.

    With fewer than ``ROWS_PER_COLUMN`` sampled patches per weight column, ``moment`` is nearly
    singular and the search would fit directions the tuning images never excite (a classifier's
    last layer sees one row per image): such layers keep nearest rounding at the max scale."""
    base_scales = max_scales(weights)
    best_values = round_nearest(weights, base_scales)
    best_scales = base_scales.copy()
    best_error = output_error(weights - best_values * best_scales[..., None], moment)
    method = np.full(best_error.shape, "nearest", dtype="<U10")
    if rows < ROWS_PER_COLUMN * weights.shape[-1]:
        return QuantizedWeights(best_values, best_scales, method)
    for ratio in CLIP_RATIOS[1:]:
        scales = base_scales * ratio
        values = round_nearest(weights, scales)
        error = output_error(weights - values * scales[..., None], moment)
        better = error < best_error
        best_values[better], best_scales[better], best_error[better] = (
            values[better],
            scales[better],
            error[better],
        )
        method[better] = "clipped"
    if sequential:
        scales = best_scales.copy()
        values = sequential_round(weights, scales, moment)
        error = output_error(weights - values * scales[..., None], moment)
        better = error < best_error
        best_values[better], best_error[better] = values[better], error[better]
        method[better] = "sequential"
    return QuantizedWeights(best_values, best_scales, method)


@dataclass(frozen=True)
class TunedWeight:
    values: npt.NDArray[np.int8]
    """In the weight's own shape."""
    scales: npt.NDArray[np.float32]
    """One per output channel (the Q/DQ axis)."""


def with_weights(qdq_model: onnx.ModelProto, weights: Mapping[str, TunedWeight]) -> onnx.ModelProto:
    """A copy of a trtq Q/DQ model whose INT8 weights and scales are replaced (same names, shapes, types)."""
    model = copy_model(qdq_model)
    initializers = {init.name: init for init in model.graph.initializer}
    for name, tuned in weights.items():
        int8, scale = initializers.get(f"{name}_int8"), initializers.get(f"{name}_scale")
        if int8 is None or scale is None:
            continue  # kept in float (excluded): nothing to replace
        int8.CopyFrom(numpy_helper.from_array(tuned.values.astype(np.int8), int8.name))
        scale.CopyFrom(numpy_helper.from_array(tuned.scales.astype(np.float32), scale.name))
    return model
