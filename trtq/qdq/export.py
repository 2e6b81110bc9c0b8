"""Write a QdqPlan into a copy of the model: QuantizeLinear/DequantizeLinear pairs on activations,
DequantizeLinear on int8 per-channel weights. Zero points are 0 (TensorRT is symmetric only) and
every scale is strictly positive, as TensorRT's ONNX parser requires.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import helper, numpy_helper

from trtq.errors import TrtqError
from trtq.model.index import GraphIndex
from trtq.model.prepare import unquantized_in_control_flow
from trtq.numeric import channel_scales, round_to_int8
from trtq.qdq.opset import convert_opset
from trtq.qdq.placement import plan_qdq

MIN_OPSET = 13  # per-channel (axis) DequantizeLinear


@dataclass
class QdqResult:
    model: onnx.ModelProto
    activation_scales: dict[str, float] = field(default_factory=dict)
    weight_channels: dict[str, int] = field(default_factory=dict)
    """Weight -> number of scales (its output channels; 1 for a per-tensor weight)."""
    missing_scale: list[str] = field(default_factory=list)
    """Tensors that need a scale (by placement) but have none in the given scales."""
    unusable_scale: dict[str, float] = field(default_factory=dict)
    """Zero or infinite scales: those tensors stay in float."""
    only_in_scales: list[str] = field(default_factory=list)
    """Scale names that are not tensors of this graph (e.g. TensorRT parser-made names)."""
    excluded_nodes: list[str] = field(default_factory=list)
    unmatched_exclude: list[str] = field(default_factory=list)
    """``exclude`` patterns that name no node of the model."""
    in_control_flow: list[str] = field(default_factory=list)
    """Tensors inside control flow trtq cannot fold: no Q/DQ pair there."""
    residual_adds: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "quantized_activations": len(self.activation_scales),
            "quantized_weights": len(self.weight_channels),
            "residual_adds_skip_branch": self.residual_adds,
            "missing_scale": self.missing_scale,
            "unusable_scale": self.unusable_scale,
            "only_in_scales": self.only_in_scales,
            "excluded_nodes": self.excluded_nodes,
            "unmatched_exclude": self.unmatched_exclude,
            "in_control_flow": self.in_control_flow,
        }


def export_qdq(model: onnx.ModelProto, scales: Mapping[str, float], exclude: Sequence[str] = ()) -> QdqResult:
    """A Q/DQ copy of ``model`` with activation ``scales`` (tensor -> scale, e.g. a TensorRT cache's)."""
    model = at_least_qdq_opset(model)
    index = GraphIndex.of(model)
    plan = plan_qdq(index, exclude)
    result = QdqResult(
        model=model,
        excluded_nodes=plan.excluded_nodes,
        unmatched_exclude=plan.unmatched_exclude,
        in_control_flow=unquantized_in_control_flow(model),
        residual_adds=plan.residual_adds,
    )
    tensors = {name for node in model.graph.node for name in node.output} | {
        i.name for i in model.graph.input
    }
    result.only_in_scales = [name for name in scales if name not in tensors]
    new_nodes: dict[int, list[onnx.NodeProto]] = {}
    node_position = {id(node): position for position, node in enumerate(model.graph.node)}
    for tensor, edges in plan.activations.items():
        if tensor not in scales:
            result.missing_scale.append(tensor)
            continue
        scale = float(np.float32(scales[tensor]))
        if not (scale > 0 and math.isfinite(scale)):
            result.unusable_scale[tensor] = scale
            continue
        qdq = _activation_qdq(model, tensor, scale)
        for node, slot in edges:
            node.input[slot] = qdq[-1].output[0]
        # Insert right before the first consumer so the graph stays topologically sorted.
        first = min(node_position[id(node)] for node, _ in edges)
        new_nodes.setdefault(first, []).extend(qdq)
        result.activation_scales[tensor] = scale
    dequantized_weights: dict[str, str] = {}
    for site in plan.weights:
        name = site.node.input[site.slot]
        if name not in dequantized_weights:
            values = index.weight(name)
            assert values is not None
            dq = _weight_dq(model, name, values, site.axis)
            new_nodes.setdefault(node_position[id(site.node)], []).append(dq)
            dequantized_weights[name] = dq.output[0]
            result.weight_channels[name] = 1 if site.axis is None else values.shape[site.axis]
        site.node.input[site.slot] = dequantized_weights[name]
    _reorder(model, new_nodes)
    _prune_unused(model)
    onnx.checker.check_model(model)
    return result


def at_least_qdq_opset(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` at opset 13 or later, where DequantizeLinear takes a per-channel axis; a
    Softmax over its last axis stays one node (trtq/qdq/opset.py)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    opset = next((o.version for o in copy.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset >= MIN_OPSET:
        return copy
    try:
        return convert_opset(copy, opset, MIN_OPSET)
    except Exception as exc:
        raise TrtqError(
            f"cannot raise the model from opset {opset} to {MIN_OPSET} for per-channel Q/DQ: {exc}"
        ) from None


def _activation_qdq(model: onnx.ModelProto, tensor: str, scale: float) -> list[onnx.NodeProto]:
    """Scale and zero-point initializers added to ``model``; the Q and DQ nodes returned for placing."""
    scale_name, zero_name = f"{tensor}_scale", f"{tensor}_zero_point"
    quantized, dequantized = f"{tensor}_QuantizeLinear_Output", f"{tensor}_DequantizeLinear_Output"
    model.graph.initializer.extend(
        [
            numpy_helper.from_array(np.array(scale, dtype=np.float32), scale_name),
            numpy_helper.from_array(np.array(0, dtype=np.int8), zero_name),
        ]
    )
    return [
        helper.make_node(
            "QuantizeLinear", [tensor, scale_name, zero_name], [quantized], f"{tensor}_QuantizeLinear"
        ),
        helper.make_node(
            "DequantizeLinear",
            [quantized, scale_name, zero_name],
            [dequantized],
            f"{tensor}_DequantizeLinear",
        ),
    ]


def _weight_dq(
    model: onnx.ModelProto, name: str, values: npt.NDArray[np.float32], axis: int | None
) -> onnx.NodeProto:
    """Symmetric int8 weights (narrow range, -127..127), per channel along ``axis`` or per tensor when
    ``axis`` is None, added to ``model``; their DequantizeLinear returned for placing."""
    if axis is None:
        amax = np.abs(values).max()
        shape = [1] * values.ndim
    else:
        reduce_axes = tuple(a for a in range(values.ndim) if a != axis)
        amax = np.abs(values).max(axis=reduce_axes) if reduce_axes else np.abs(values)
        shape = [1] * values.ndim
        shape[axis] = -1
    # An all-zero channel still needs a scale > 0.
    scale = channel_scales(np.asarray(amax, dtype=np.float32))
    quantized = round_to_int8(values, scale.reshape(shape))
    scale_name, zero_name, int8_name = f"{name}_scale", f"{name}_zero_point", f"{name}_int8"
    model.graph.initializer.extend(
        [
            numpy_helper.from_array(quantized, int8_name),
            numpy_helper.from_array(scale, scale_name),
            numpy_helper.from_array(np.zeros(scale.shape, dtype=np.int8), zero_name),
        ]
    )
    node = helper.make_node(
        "DequantizeLinear",
        [int8_name, scale_name, zero_name],
        [f"{name}_DequantizeLinear_Output"],
        f"{name}_DequantizeLinear",
    )
    if axis is not None:
        node.attribute.append(helper.make_attribute("axis", axis))
    return node


def _prune_unused(model: onnx.ModelProto) -> None:
    """Drop the float weights (initializers or Constant nodes) that their int8 copies replaced, and
    the graph inputs that named those initializers (older PyTorch exports list every initializer as
    an input too; left behind, they would become required inputs with no value)."""
    used = {name for node in model.graph.node for name in node.input} | {o.name for o in model.graph.output}
    keep = [n for n in model.graph.node if n.op_type != "Constant" or any(o in used for o in n.output)]
    if len(keep) != len(model.graph.node):
        copies = [_copy(node) for node in keep]
        del model.graph.node[:]
        model.graph.node.extend(copies)
    unused = [i for i, init in enumerate(model.graph.initializer) if init.name not in used]
    removed = {model.graph.initializer[i].name for i in unused}
    for position in reversed(unused):
        del model.graph.initializer[position]
    stale_inputs = [i for i, graph_input in enumerate(model.graph.input) if graph_input.name in removed]
    for position in reversed(stale_inputs):
        del model.graph.input[position]


def _copy(node: onnx.NodeProto) -> onnx.NodeProto:
    copy = onnx.NodeProto()
    copy.CopyFrom(node)
    return copy


def _reorder(model: onnx.ModelProto, new_nodes: dict[int, list[onnx.NodeProto]]) -> None:
    """Put each inserted node right before the original node (by position) that first consumes it."""
    original = list(model.graph.node)
    ordered: list[onnx.NodeProto] = []
    for position, node in enumerate(original):
        ordered.extend(new_nodes.get(position, []))
        ordered.append(node)
    del model.graph.node[:]
    model.graph.node.extend(ordered)
