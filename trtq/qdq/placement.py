"""Where TensorRT wants Q/DQ: activations per-tensor on the inputs of the ops it runs in INT8, weights
per-channel, and on residual Adds only the skip branch (so the Conv + Add fusion stays possible). A
branch's activation may be SiLU written as Mul(x, Sigmoid(x)) (YOLOv5/v8 exports), one op to TensorRT.

Sources: docs/tensorrt.md section 5 (TensorRT's Q/DQ placement guidance, the ONNX parser's
constraints, ModelOpt's TensorRT-oriented choices).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass, field

import onnx

from trtq.model.index import GraphIndex

# Ops with weights -> the input slot of that weight (the activation is input 0; _weight_axis gives the axis).
WEIGHTED_OPS = {"Conv": 1, "ConvTranspose": 1, "Gemm": 1, "MatMul": 1}
# Ops TensorRT also runs in INT8 when their input is quantized.
POOLING_OPS = frozenset({"MaxPool", "AveragePool", "GlobalAveragePool"})
# What a residual branch's main path may pass through after its Conv before reaching the Add (and SiLU,
# two nodes, recognised by _silu_input).
_MAIN_PATH_OPS = frozenset({"BatchNormalization", "Add", "Mul", "Relu", "Clip", "HardSwish", "HardSigmoid"})


@dataclass(frozen=True)
class WeightSite:
    node: onnx.NodeProto
    slot: int
    axis: int | None
    """The output-channel axis of per-channel scales; None for one per-tensor scale (no such axis)."""


@dataclass
class QdqPlan:
    activations: dict[str, list[tuple[onnx.NodeProto, int]]] = field(default_factory=dict)
    """Activation tensor -> the (consumer, input slot) edges that get its Q/DQ pair."""
    weights: list[WeightSite] = field(default_factory=list)
    excluded_nodes: list[str] = field(default_factory=list)
    unmatched_exclude: list[str] = field(default_factory=list)
    """``exclude`` patterns that name no node: a typo keeps nothing in float, silently otherwise."""
    residual_adds: int = 0

    def add_activation(self, tensor: str, node: onnx.NodeProto, slot: int) -> None:
        self.activations.setdefault(tensor, []).append((node, slot))


def plan_qdq(index: GraphIndex, exclude: Sequence[str] = ()) -> QdqPlan:
    plan = QdqPlan()
    names = [node.name for node in index.model.graph.node]
    plan.unmatched_exclude = [p for p in exclude if not any(fnmatch.fnmatchcase(n, p) for n in names)]
    for node in index.model.graph.node:
        if exclude and any(fnmatch.fnmatchcase(node.name, pattern) for pattern in exclude):
            if node.op_type in WEIGHTED_OPS or node.op_type in POOLING_OPS or node.op_type == "Add":
                plan.excluded_nodes.append(node.name)
            continue
        if node.op_type in WEIGHTED_OPS:
            _plan_weighted(index, plan, node)
        elif node.op_type in POOLING_OPS and index.is_activation(node.input[0]):
            plan.add_activation(node.input[0], node, 0)
        elif node.op_type == "Add":
            _plan_residual_add(index, plan, node)
    return plan


def _plan_weighted(index: GraphIndex, plan: QdqPlan, node: onnx.NodeProto) -> None:
    data = node.input[0]
    if index.is_activation(data):
        plan.add_activation(data, node, 0)
    slot = WEIGHTED_OPS[node.op_type]
    weight = node.input[slot] if len(node.input) > slot else ""
    if not weight:
        return
    values = index.weight(weight)
    if values is not None:
        plan.weights.append(WeightSite(node, slot, _weight_axis(node, values.ndim)))
    elif index.is_activation(weight):  # activation x activation MatMul: both sides per-tensor
        plan.add_activation(weight, node, slot)


def _weight_axis(node: onnx.NodeProto, ndim: int) -> int | None:
    """The output-channel axis: 0 for Conv ([Cout, Cin, ...]), 1 for ConvTranspose ([Cin, Cout, ...]),
    Gemm's B is [N, K] with transB=1 (axis 0) else [K, N] (axis 1), MatMul's B is [..., K, N]; a 1-D
    MatMul B is a [K] vector that MatMul reduces away, so it has no output channel (None: per tensor)."""
    if node.op_type == "Conv":
        return 0
    if node.op_type == "ConvTranspose":
        return 1
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    return ndim - 1 if ndim >= 2 else None


def _plan_residual_add(index: GraphIndex, plan: QdqPlan, node: onnx.NodeProto) -> None:
    inputs = [name for name in node.input if name]
    if len(inputs) != 2 or not all(index.is_activation(name) for name in inputs):
        return  # a bias or scale Add: nothing to fuse, nothing to quantize
    paths = [_path_from_conv(index, name) for name in inputs]
    if paths == [None, None]:
        return  # no Conv on either side: not a residual block
    # The Add fuses into a Conv whose output (and everything between it and the Add) feeds only this
    # Add's branch; the other input, the skip branch, gets the Q/DQ. A Conv output that also feeds
    # other nodes (the block input of the next residual block, say) cannot take the Add in, so it is
    # the skip side.
    fusable = [
        path is not None and all(len(index.consumers[t]) == readers for t, readers in path) for path in paths
    ]
    if fusable[0] != fusable[1]:
        skip = 0 if fusable[1] else 1
    elif (paths[0] is None) != (paths[1] is None):
        skip = 0 if paths[1] is not None else 1
    else:
        skip = 1  # two equal Conv branches: quantize one, the other fuses
    plan.add_activation(inputs[skip], node, skip)
    plan.residual_adds += 1


def _path_from_conv(index: GraphIndex, tensor: str, depth: int = 4) -> list[tuple[str, int]] | None:
    """The tensors from a Conv's output to ``tensor`` through bias Adds, BatchNorm and activations,
    each with the number of readers it has inside the branch (2 for the input of a SiLU written as
    Mul(x, Sigmoid(x)), which both its nodes read; else 1), or None when ``tensor`` does not come
    from a Conv that way."""
    path = [(tensor, 1)]
    node = index.producer.get(tensor)
    for _ in range(depth):
        if node is None:
            return None
        if node.op_type in WEIGHTED_OPS:
            return path
        silu = _silu_input(index, node)
        activations = [name for name in node.input if index.is_activation(name)]
        if silu is not None:
            path.append((silu, 2))
        elif node.op_type in _MAIN_PATH_OPS and len(activations) == 1:
            path.append((activations[0], 1))
        else:
            return None
        node = index.producer.get(path[-1][0])
    return None


def _silu_input(index: GraphIndex, node: onnx.NodeProto) -> str | None:
    """x when ``node`` is Mul(x, Sigmoid(x)) (either order): SiLU as YOLOv5/v8 exports write it,
    one activation to TensorRT, which fuses it into the Conv before it."""
    if node.op_type != "Mul" or len(node.input) != 2:
        return None
    first, second = node.input
    for x, gate in ((first, second), (second, first)):
        sigmoid = index.producer.get(gate)
        is_gate = sigmoid is not None and sigmoid.op_type == "Sigmoid" and list(sigmoid.input) == [x]
        if is_gate and index.is_activation(x) and len(index.consumers[gate]) == 1:
            return str(x)
    return None
