"""Raise a model's opset without wrapping Softmax in Flatten/Reshape where its meaning does not change.

Before opset 13, Softmax, LogSoftmax and Hardmax flatten their input to 2-D at ``axis`` and normalise
over everything after it; from 13 they normalise over ``axis`` alone. ONNX's version converter keeps
the old meaning by wrapping such a node in Shape, Flatten and Reshape (unnamed) unless its own shape
inference shows the axis is the last; in exports whose shapes are computed (Paddle's Reshapes fed by
Concat of Shape slices) it cannot, and the wrapper hides the Softmax from TensorRT's attention fusion.
Nodes whose axis is the last (by ranks inferred past those Reshapes) mean the same in both opsets, so
they are carried over unchanged: swapped for Identity (which converts as itself) while the converter
runs, and restored after."""

from __future__ import annotations

import onnx
import onnx.version_converter
from onnx import helper

COERCED_TO_2D = frozenset({"Softmax", "LogSoftmax", "Hardmax"})
AXIS_ONLY_OPSET = 13
"""The opset from which COERCED_TO_2D ops act on their axis alone."""


def convert_opset(model: onnx.ModelProto, opset: int, target: int) -> onnx.ModelProto:
    """``model`` (at ``opset``) converted to ``target``, last-axis COERCED_TO_2D nodes unwrapped."""
    kept = _last_axis_nodes(model) if opset < AXIS_ONLY_OPSET <= target else {}
    work = onnx.ModelProto()
    work.CopyFrom(model)
    for node in work.graph.node:
        if node.output and node.output[0] in kept:
            node.op_type = "Identity"
            del node.attribute[:]
    converted = onnx.version_converter.convert_version(work, target)
    for node in converted.graph.node:
        original = kept.get(node.output[0]) if node.op_type == "Identity" and node.output else None
        if original is not None:
            node.op_type = original.op_type
            node.attribute.extend(original.attribute)
    return converted


def _last_axis_nodes(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    """COERCED_TO_2D nodes of the main graph whose axis is their input's last, by output name."""
    nodes = [node for node in model.graph.node if node.op_type in COERCED_TO_2D]
    found: dict[str, onnx.NodeProto] = {}
    if not nodes:
        return found
    ranks = tensor_ranks(model, {name for node in nodes for name in (node.input[0], node.output[0])})
    for node in nodes:
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        rank = ranks.get(node.input[0], ranks.get(node.output[0]))
        if axis == -1 or (rank is not None and axis == rank - 1):
            found[node.output[0]] = node
    return found


def tensor_ranks(model: onnx.ModelProto, wanted: set[str]) -> dict[str, int]:
    """Ranks ONNX shape inference finds, helped past Reshapes whose target shape is computed.

    Inference gives a Reshape fed a computed shape (Paddle exports: Concat of Shape slices) no rank at
    all, and so nothing after it; but the output's rank is the length of the shape input, which it
    often knows. Those ranks are filled in and inference is run again until the ``wanted`` tensors
    have theirs or nothing more is learned.
    """
    work = onnx.ModelProto()
    work.CopyFrom(model)
    while True:
        try:
            inferred = onnx.shape_inference.infer_shapes(work)
        except onnx.shape_inference.InferenceError:
            return {}
        graph = inferred.graph
        types = {info.name: info.type for info in [*graph.input, *graph.value_info, *graph.output]}
        ranks = {
            name: len(kind.tensor_type.shape.dim)
            for name, kind in types.items()
            if kind.HasField("tensor_type") and kind.tensor_type.HasField("shape")
        }
        if wanted <= ranks.keys():
            return ranks
        learned = [
            helper.make_tensor_value_info(
                node.output[0], types[node.input[0]].tensor_type.elem_type, [None] * length
            )
            for node in work.graph.node
            if node.op_type == "Reshape"
            and node.output[0] not in ranks
            and node.input[0] in types
            and (length := _known_length(types.get(node.input[1]))) is not None
        ]
        if not learned:
            return ranks
        work.graph.value_info.extend(learned)


def _known_length(kind: onnx.TypeProto | None) -> int | None:
    """The length of a 1-D tensor of this type, if inference knows it."""
    if kind is None or not kind.tensor_type.HasField("shape"):
        return None
    dims = kind.tensor_type.shape.dim
    return dims[0].dim_value if len(dims) == 1 and dims[0].HasField("dim_value") else None
