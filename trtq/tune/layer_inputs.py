"""The weighted layers the weight-side tuning can change, and the input statistics it needs.

A Conv or Gemm is a matrix product of its weights with input patches, so the output error of any
weight change ``D`` (per group: out channels x patch length) is ``D @ S @ D.T`` on the diagonal, with
``S`` the patches' second moment, and its mean is ``D @ mean``. One FP32 pass over the tuning images
therefore gives everything the rounding search and the bias correction need, per layer.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx

from trtq.model.edit import attributes as node_attributes
from trtq.model.index import GraphIndex
from trtq.model.runner import OnnxRunner
from trtq.qdq.placement import plan_qdq
from trtq.tune.weights import ROWS_PER_COLUMN

Array = npt.NDArray[np.float32]
Float64 = npt.NDArray[np.float64]
MATRIX_OPS = frozenset({"Gemm", "MatMul"})
"""Layers whose weight is one [in, out] matrix (or [out, in] for Gemm with transB)."""
MIN_POSITIONS = 512
MAX_POSITIONS = 16384
"""Output positions sampled per layer over all the fitting batches: ROWS_PER_COLUMN times the patch
length (trtq/tune/weights.py: fewer and the layer keeps nearest rounding) and a quarter more (a
batch may have fewer positions than its share), at least MIN_POSITIONS,
and no more than MAX_POSITIONS unless the patch needs more; spread evenly over the batches. A bound
per batch made a YOLOv8n's statistics (3x3 convs with patches up to 2304 long) cost 17 s of tune's
60 on 9 batches; a second moment needs rows, not batches (now 9 s)."""


@dataclass(frozen=True)
class WeightedLayer:
    node: str
    op: str
    data: str
    """The activation the layer reads."""
    weight: str
    bias: str
    """Bias input name, or '' when the layer has none."""
    axis: int
    """Output-channel axis of the weight (the per-channel Q/DQ axis)."""
    groups: int = 1
    kernel: tuple[int, ...] = ()
    strides: tuple[int, ...] = ()
    pads: tuple[int, ...] = ()
    dilations: tuple[int, ...] = ()

    @property
    def has_bias_input(self) -> bool:
        """Conv and Gemm take a bias input bias correction can change; MatMul has none."""
        return self.op != "MatMul"

    def matrix(self, weight: Array) -> Array:
        """Weights as [groups, out channels per group, patch length]."""
        if self.op in MATRIX_OPS:
            rows = weight if self.axis == 0 else weight.T
            return np.ascontiguousarray(rows[None, :, :])
        out_channels = weight.shape[0]
        return weight.reshape(self.groups, out_channels // self.groups, -1)

    def unmatrix(self, matrix: npt.NDArray[Any], shape: Sequence[int]) -> npt.NDArray[Any]:
        if self.op in MATRIX_OPS:
            rows = matrix[0]
            return np.ascontiguousarray(rows if self.axis == 0 else rows.T)
        return matrix.reshape(shape)

    def patch_length(self, data_shape: Sequence[int]) -> int:
        if self.op in MATRIX_OPS:
            return int(data_shape[-1])
        return int(data_shape[1]) // self.groups * math.prod(self.kernel)

    def patches(self, data: Array, rng: np.random.Generator, limit: int) -> Array:
        """Input patches [rows, groups, patch length] at up to ``limit`` sampled output positions."""
        if self.op in MATRIX_OPS:  # every row of the input (every position of a sequence) is a patch
            every = data.reshape(-1, data.shape[-1])
            if every.shape[0] > limit:
                every = every[np.sort(rng.choice(every.shape[0], limit, replace=False))]
            return every[:, None, :]
        n, channels, height, width = data.shape
        (kh, kw), (sh, sw), (dh, dw) = self.kernel, self.strides, self.dilations
        top, left, bottom, right = self.pads
        padded = np.pad(data, ((0, 0), (0, 0), (top, bottom), (left, right)))
        out_h = (height + top + bottom - dh * (kh - 1) - 1) // sh + 1
        out_w = (width + left + right - dw * (kw - 1) - 1) // sw + 1
        total = n * out_h * out_w
        chosen = np.arange(total) if total <= limit else np.sort(rng.choice(total, limit, replace=False))
        image, rest = np.divmod(chosen, out_h * out_w)
        row, col = np.divmod(rest, out_w)
        rows = (row * sh)[:, None] + (np.arange(kh) * dh)[None, :]
        cols = (col * sw)[:, None] + (np.arange(kw) * dw)[None, :]
        taken = padded[image[:, None, None, None], np.arange(channels)[None, :, None, None],
                       rows[:, None, :, None], cols[:, None, None, :]]  # fmt: skip
        return taken.reshape(len(chosen), self.groups, -1)


def weighted_layers(model: onnx.ModelProto) -> list[WeightedLayer]:
    """Conv (2-D, explicit pads), plain Gemm and MatMul-by-a-matrix layers whose weights get
    per-channel Q/DQ, in graph order."""
    index = GraphIndex.of(model)
    layers = []
    for site in plan_qdq(index).weights:
        node, axis = site.node, site.axis
        if axis is None:  # a per-tensor weight (1-D MatMul): no output channels to tune
            continue
        attributes = node_attributes(node)
        weight = index.weight(node.input[1])
        bias = node.input[2] if len(node.input) > 2 else ""
        if weight is None or not index.is_activation(node.input[0]) or (bias and index.weight(bias) is None):
            continue
        if node.op_type == "Conv" and weight.ndim == 4 and attributes.get("auto_pad", b"NOTSET") == b"NOTSET":
            kernel = tuple(weight.shape[2:])
            layers.append(
                WeightedLayer(
                    node.name,
                    "Conv",
                    node.input[0],
                    node.input[1],
                    bias,
                    axis,
                    int(attributes.get("group", 1)),
                    kernel,
                    tuple(attributes.get("strides", (1, 1))),
                    tuple(attributes.get("pads", (0, 0, 0, 0))),
                    tuple(attributes.get("dilations", (1, 1))),
                )
            )
        elif (
            node.op_type == "Gemm"
            and not attributes.get("transA", 0)
            and attributes.get("alpha", 1.0) == 1.0
            and attributes.get("beta", 1.0) == 1.0
        ):
            layers.append(WeightedLayer(node.name, "Gemm", node.input[0], node.input[1], bias, axis))
        elif node.op_type == "MatMul" and weight.ndim == 2:  # x [..., K] @ W [K, N]: an attention projection
            layers.append(WeightedLayer(node.name, "MatMul", node.input[0], node.input[1], "", axis))
    return layers


@dataclass
class LayerInputs:
    """Sums over sampled input patches of one layer: enough for its output error's mean and second moment."""

    rows: int = 0
    total: Float64 = field(default_factory=lambda: np.zeros(0))
    outer: Float64 = field(default_factory=lambda: np.zeros(0))

    def add(self, patches: Array) -> None:
        # Products in float32 (half float64's cost; each sum is over one batch's rows), sums in float64.
        grouped = np.ascontiguousarray(patches.transpose(1, 0, 2), dtype=np.float32)  # [groups, rows, k]
        outer = np.matmul(grouped.transpose(0, 2, 1), grouped).astype(np.float64)
        total = grouped.sum(axis=1, dtype=np.float64)
        if self.rows == 0:
            self.outer, self.total = outer, total
        else:
            self.outer += outer
            self.total += total
        self.rows += patches.shape[0]

    @property
    def mean(self) -> Float64:
        """[groups, k]"""
        return self.total / max(self.rows, 1)

    @property
    def second_moment(self) -> Float64:
        """[groups, k, k]"""
        return self.outer / max(self.rows, 1)


def rows_per_batch(patch_length: int, batch_count: int) -> int:
    """Positions to sample from each batch so the layer gets its rows over all of them."""
    needed = ROWS_PER_COLUMN * patch_length
    wanted = max(needed, min(MAX_POSITIONS, max(MIN_POSITIONS, needed + needed // 4)))
    return -(-wanted // max(1, batch_count))


def collect_layer_inputs(
    model: onnx.ModelProto,
    layers: Sequence[WeightedLayer],
    input_name: str,
    batches: Iterable[Array],
    batch_count: int = 1,
    seed: int = 0,
) -> dict[str, LayerInputs]:
    """One FP32 pass over ``batch_count`` batches with every layer's input exposed; patches are
    summed per layer and dropped."""
    outputs = sorted({layer.data for layer in layers} - {input_name})
    runner = OnnxRunner(model, expose=outputs)
    rng = np.random.default_rng(seed)
    stats = {layer.node: LayerInputs() for layer in layers}
    for batch in batches:
        values = runner.infer({input_name: batch}, outputs)
        values[input_name] = batch
        for layer in layers:
            data = np.asarray(values[layer.data], np.float32)
            limit = rows_per_batch(layer.patch_length(data.shape), batch_count)
            stats[layer.node].add(layer.patches(data, rng, limit))
    return stats
