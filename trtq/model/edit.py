"""Copies and edits of ONNX models: every change trtq makes works on a copy, never on the caller's model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import onnx
from onnx import helper


def copy_model(model: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


def with_outputs(
    model: onnx.ModelProto, tensors: Sequence[str], elem_types: Mapping[str, int] | None = None
) -> onnx.ModelProto:
    """A copy of ``model`` that also outputs ``tensors`` (graph inputs and existing outputs are
    skipped); ``elem_types`` gives their ONNX element types where known, else float."""
    copy = copy_model(model)
    graph = copy.graph
    skipped = {value.name for value in [*graph.output, *graph.input]}
    types = elem_types or {}
    graph.output.extend(
        helper.make_tensor_value_info(name, types.get(name, onnx.TensorProto.FLOAT), None)
        for name in dict.fromkeys(tensors)
        if name not in skipped
    )
    return copy


def attributes(node: onnx.NodeProto) -> dict[str, Any]:
    """A node's attributes by name, as Python values."""
    return {attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute}
