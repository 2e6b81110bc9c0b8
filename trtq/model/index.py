"""Read-only facts about an ONNX graph: producers, consumers, constants, stored tensors, and the
activations TensorRT calibrates. Calibration, Q/DQ placement and tune all read the graph through it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import onnx
from onnx import numpy_helper

FLOAT_TYPES = frozenset(
    {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16}
)


def constant_tensors(graph: onnx.GraphProto) -> set[str]:
    """Initializers, Constant outputs, and outputs of nodes whose every input is constant: TensorRT
    folds them into weights, so they get neither a calibration scale nor a Q/DQ pair."""
    constant = {init.name for init in graph.initializer}
    for node in graph.node:
        inputs = [name for name in node.input if name] + outer_scope_inputs(node)
        if node.op_type == "Constant" or (inputs and all(name in constant for name in inputs)):
            constant.update(node.output)
    return constant


@dataclass
class GraphIndex:
    model: onnx.ModelProto
    producer: dict[str, onnx.NodeProto] = field(default_factory=dict)
    consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = field(default_factory=dict)
    initializers: dict[str, onnx.TensorProto] = field(default_factory=dict)
    constant: set[str] = field(default_factory=set)
    """Initializers, Constant outputs, and outputs of nodes fed only by constants (TensorRT folds them)."""

    @classmethod
    def of(cls, model: onnx.ModelProto) -> GraphIndex:
        index = cls(model)
        graph = model.graph
        index.initializers = {init.name: init for init in graph.initializer}
        index.constant = constant_tensors(graph)
        for node in graph.node:
            for slot, name in enumerate(node.input):
                if name:
                    index.consumers.setdefault(name, []).append((node, slot))
            for name in node.output:
                index.producer[name] = node
        return index

    def stored(self, name: str) -> onnx.TensorProto | None:
        """The tensor an initializer or a Constant node's ``value`` holds (Paddle exports use the
        latter); None for anything computed."""
        tensor = self.initializers.get(name)
        node = self.producer.get(name)
        if tensor is None and node is not None and node.op_type == "Constant":
            tensor = next((a.t for a in node.attribute if a.name == "value"), None)
        return tensor

    def weight(self, name: str) -> npt.NDArray[np.float32] | None:
        """A float32 weight held by an initializer or a Constant node."""
        tensor = self.stored(name)
        if tensor is None or tensor.data_type != onnx.TensorProto.FLOAT:
            return None
        return np.asarray(numpy_helper.to_array(tensor), dtype=np.float32)

    def is_activation(self, name: str) -> bool:
        return bool(name) and name not in self.constant


def activation_tensors(model: onnx.ModelProto) -> dict[str, int]:
    """The float activations TensorRT would calibrate, in graph order, with their ONNX element types."""
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    elem_type = {
        vi.name: vi.type.tensor_type.elem_type for vi in [*graph.input, *graph.value_info, *graph.output]
    }
    constant = constant_tensors(graph)
    names = {
        vi.name: vi.type.tensor_type.elem_type
        for vi in graph.input
        if vi.name not in constant and elem_type.get(vi.name) in FLOAT_TYPES
    }
    for node in graph.node:
        names.update(
            (name, elem_type[name])
            for name in node.output
            if name not in constant and elem_type.get(name) in FLOAT_TYPES
        )
    return names


SHAPE_READERS = frozenset({"Shape", "Size"})
"""Ops whose output depends on their input's shape, never on its values."""
SIZED_BY_ARGUMENTS = frozenset(
    {"Reshape", "Expand", "Tile", "Slice", "Pad", "Resize", "Upsample", "Squeeze", "Unsqueeze", "Split",
     "TopK", "OneHot", "ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
     "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"}
)  # fmt: skip
"""Standard ops whose output shape follows the values of their inputs after the first (shape, axes,
pads, sizes, k, depth)."""
SIZED_BY_VALUES = frozenset(
    {"ConstantOfShape", "Range", "NonZero", "Compress", "Unique", "NonMaxSuppression", "If", "Loop", "Scan"}
)
"""Ops whose output shape follows the values of any input (data-dependent shapes, control flow)."""


def shape_only_tensors(model: onnx.ModelProto) -> set[str]:
    """Computed tensors that depend on the graph inputs' shapes alone (ConstantOfShape(Shape(x)), a
    YOLO head's anchor grid): the same values whatever the image, so being zero on every calibration
    image says nothing about the images or the preprocessing. A Shape of a tensor whose shape follows
    values (NonZero's, a Reshape to computed sizes) follows values; an op outside the standard domain
    or with no inputs (a random generator) is taken to follow values."""
    graph = model.graph
    constant = constant_tensors(graph)
    by_values = {vi.name for vi in graph.input if vi.name not in constant}
    sized_by_values: set[str] = set()
    computed: set[str] = set()
    for node in graph.node:
        computed.update(node.output)
        inputs = [name for name in [*node.input, *outer_scope_inputs(node)] if name]
        valued = [name in by_values for name in inputs]
        sized = any(name in sized_by_values for name in inputs)
        standard = node.domain in ("", "ai.onnx")
        if node.op_type in SHAPE_READERS and standard:
            follows_values = sized
        else:
            follows_values = any(valued) or not inputs or not standard
            arguments = valued[1:] if node.op_type in SIZED_BY_ARGUMENTS else valued
            sized = (
                sized
                or not standard
                or (any(arguments) and node.op_type in SIZED_BY_ARGUMENTS | SIZED_BY_VALUES)
            )
        if follows_values and node.op_type != "Constant":
            by_values.update(node.output)
        if sized:
            sized_by_values.update(node.output)
    return computed - by_values - constant


def outer_scope_inputs(node: onnx.NodeProto) -> list[str]:
    """Names a control-flow node's branches or body read from the graph around it: inputs as real as
    its listed ones (an If whose condition is constant still computes from the activations its
    branches read)."""
    names: list[str] = []
    for graph in subgraphs(node):
        local = {value.name for value in [*graph.input, *graph.initializer]}
        for inner in graph.node:
            names.extend(
                name for name in [*inner.input, *outer_scope_inputs(inner)] if name and name not in local
            )
            local.update(inner.output)
    return names


def subgraphs(node: onnx.NodeProto) -> Iterator[onnx.GraphProto]:
    """The graphs a control-flow node holds (an If's branches, a Loop's or Scan's body)."""
    for attribute in node.attribute:
        if attribute.HasField("g"):
            yield attribute.g
        yield from attribute.graphs
