"""A float model made ready for calibration and Q/DQ export, the same way for every command.

- Nodes without a name (legal ONNX; Constants excepted) get ``<op_type>_<position>``, deterministic
  and unique, so tune, sensitivity, ``qdq.exclude`` and the exported Q/DQ model name the same nodes.
- An ``If`` whose condition is a constant is replaced by the branch it takes, as TensorRT's ONNX
  importer folds it: the branch's tensors are then calibrated and quantized like any other.
- A model that already holds QuantizeLinear/DequantizeLinear nodes is refused: it is quantized
  already (TensorRT builds it as it is, ``build.precision: int8-qdq``).
- Tensors computed inside control flow that cannot be folded (a data-dependent ``If``, ``Loop``,
  ``Scan``) are neither calibrated nor quantized: ``unquantized_in_control_flow`` names them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from trtq.errors import TrtqError
from trtq.model.edit import copy_model
from trtq.model.index import GraphIndex, subgraphs
from trtq.text import first_few

QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
CONTROL_FLOW = frozenset({"If", "Loop", "Scan"})


def prepared(model: onnx.ModelProto, source: Path) -> onnx.ModelProto:
    """``model`` (unchanged when nothing applies) with constant-condition Ifs folded and every node
    named; a TrtqError naming ``source`` for a model that is not a float model trtq can calibrate."""
    if not model.graph.node and not model.graph.output:
        raise TrtqError(f"{source}: not an ONNX model (no graph: an empty or truncated file?)")
    quantized = [node.name or node.op_type for node in model.graph.node if node.op_type in QDQ_OPS]
    if quantized:
        raise TrtqError(
            f"{source}: the model is quantized already ({len(quantized)} Q/DQ nodes, first "
            f"'{quantized[0]}'); calibrate and export the float model, or build this one as it is "
            "with build.precision: int8-qdq"
        )
    if any(node.op_type == "If" for node in model.graph.node):
        model = _fold_constant_ifs(model)
    if any(_needs_name(node) for node in _nodes(model.graph)):
        model = _named(model)
    return model


def unquantized_in_control_flow(model: onnx.ModelProto) -> list[str]:
    """Float tensors made inside the branches or bodies of control-flow nodes left in the graph."""
    return [
        output
        for node in model.graph.node
        if node.op_type in CONTROL_FLOW
        for graph in subgraphs(node)
        for inner in _nodes(graph)
        for output in inner.output
        if output
    ]


def control_flow_note(tensors: list[str]) -> str | None:
    """One warning for the tensors ``unquantized_in_control_flow`` found, or None."""
    if not tensors:
        return None
    shown = first_few(tensors, quoted=True)
    return (
        f"{len(tensors)} tensors inside control flow that cannot be folded (a data-dependent If, a "
        f"Loop) get no scale and stay in float: {shown}"
    )


def _named(model: onnx.ModelProto) -> onnx.ModelProto:
    model = copy_model(model)
    taken = {node.name for node in _nodes(model.graph) if node.name}
    for position, node in enumerate(_nodes(model.graph)):
        if not _needs_name(node):
            continue
        name, suffix = f"{node.op_type}_{position}", 0
        while name in taken:
            suffix += 1
            name = f"{node.op_type}_{position}_{suffix}"
        node.name = name
        taken.add(name)
    return model


def _needs_name(node: onnx.NodeProto) -> bool:
    """Unnamed nodes other than Constants (exporters leave those unnamed, and no rule names them)."""
    return not node.name and node.op_type != "Constant"


def _fold_constant_ifs(model: onnx.ModelProto) -> onnx.ModelProto:
    """Each If with a constant condition replaced by its taken branch: the branch's initializers
    join the graph's, its nodes take the If's place, and Identity nodes give the If's outputs."""
    model = copy_model(model)
    index = GraphIndex.of(model)
    graph = model.graph
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        condition = _constant_condition(index, node) if node.op_type == "If" else None
        if condition is None:
            nodes.append(node)
            continue
        branch = next(
            a.g for a in node.attribute if a.name == ("then_branch" if condition else "else_branch")
        )
        graph.initializer.extend(branch.initializer)
        nodes.extend(branch.node)
        nodes.extend(
            helper.make_node("Identity", [inner.name], [outer], f"{node.name or 'If'}_{outer}_folded")
            for inner, outer in zip(branch.output, node.output, strict=True)
        )
    del graph.node[:]
    graph.node.extend(nodes)
    return model


def _constant_condition(index: GraphIndex, node: onnx.NodeProto) -> bool | None:
    tensor = index.stored(node.input[0]) if node.input else None
    if tensor is None:
        return None
    value = numpy_helper.to_array(tensor)
    return bool(np.asarray(value).reshape(-1)[0]) if value.size == 1 else None


def _nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """Every node of ``graph`` and of its subgraphs, in order."""
    for node in graph.node:
        yield node
        for subgraph in subgraphs(node):
            yield from _nodes(subgraph)
