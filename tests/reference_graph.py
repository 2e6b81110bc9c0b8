"""Expected Q/DQ placement derived from an ONNX graph by a plain walk, written apart from trtq/qdq.

TensorRT's rules as the tests read them: Conv, ConvTranspose, Gemm and MatMul take Q/DQ on their data
input and per-channel weights; pooling ops on their input; an Add of two activations where one side
comes from a Conv (through BatchNorm, an activation, SiLU as Mul(x, Sigmoid(x)), or a bias Add) takes
Q/DQ on the other side only.
TensorRT fuses the Add into that Conv, which it can only do when the Conv's output goes nowhere else:
a Conv output that also feeds other nodes (the input of the next block) is the skip side.
"""

from __future__ import annotations

import onnx

WEIGHTED = ("Conv", "ConvTranspose", "Gemm", "MatMul")
POOLING = ("MaxPool", "AveragePool", "GlobalAveragePool")
PASS_THROUGH = ("BatchNormalization", "Relu", "Clip", "HardSigmoid", "HardSwish")


def constants(model: onnx.ModelProto) -> set[str]:
    """Initializers, Constant outputs and everything computed from them alone."""
    names = {init.name for init in model.graph.initializer}
    for node in model.graph.node:  # ONNX graphs are topologically sorted
        inputs = [name for name in node.input if name]
        if node.op_type == "Constant" or (inputs and set(inputs) <= names):
            names.update(node.output)
    return names


def conv_branch(model: onnx.ModelProto, tensor: str) -> str | None:
    """'fusable' when ``tensor`` is a weighted op's output seen through BatchNorm, activations and bias
    Adds/Muls, each step read by one node only; 'shared' when some step also feeds other nodes; None
    when no weighted op is reached."""
    made_by = {out: node for node in model.graph.node for out in node.output}
    readers: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    constant = constants(model)
    shared = readers.get(tensor, 0) > 1
    node = made_by.get(tensor)
    while node is not None:
        if node.op_type in WEIGHTED:
            return "shared" if shared else "fusable"
        moving = [name for name in node.input if name and name not in constant]
        silu = [x for x in moving if is_silu(node, x, made_by, readers)]
        if silu:  # x * Sigmoid(x): both nodes read x, the Mul alone reads the Sigmoid
            shared = shared or readers[silu[0]] > 2
            node = made_by.get(silu[0])
            continue
        bias = node.op_type in ("Add", "Mul") and len(moving) == 1
        if not (node.op_type in PASS_THROUGH or bias) or len(moving) != 1:
            return None
        shared = shared or readers[moving[0]] > 1
        node = made_by.get(moving[0])
    return None


def is_silu(
    node: onnx.NodeProto, x: str, made_by: dict[str, onnx.NodeProto], readers: dict[str, int]
) -> bool:
    """``node`` is Mul(x, Sigmoid(x)) in either order, the Sigmoid read by this Mul only."""
    if node.op_type != "Mul" or sorted(node.input).count(x) != 1 or len(node.input) != 2:
        return False
    gate = node.input[1] if node.input[0] == x else node.input[0]
    sigmoid = made_by.get(gate)
    return (
        sigmoid is not None
        and sigmoid.op_type == "Sigmoid"
        and list(sigmoid.input) == [x]
        and readers[gate] == 1
    )


def residual_adds(model: onnx.ModelProto) -> list[tuple[onnx.NodeProto, int | None]]:
    """Adds of two activations with a Conv on at least one side, each with the input slot of its skip
    branch (None when both sides are equally fusable Conv branches: either may carry the Q/DQ)."""
    constant = constants(model)
    found = []
    for node in model.graph.node:
        if node.op_type != "Add" or len(node.input) != 2 or set(node.input) & constant:
            continue
        kinds = [conv_branch(model, name) for name in node.input]
        if kinds == [None, None]:
            continue
        for ranking in (("fusable",), ("fusable", "shared")):
            main = [kind in ranking for kind in kinds]
            if main[0] != main[1]:
                found.append((node, main.index(False)))
                break
        else:
            found.append((node, None))
    return found


def weighted_with_constant_weights(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    constant = constants(model)
    return [n for n in model.graph.node if n.op_type in WEIGHTED and n.input[1:2] and n.input[1] in constant]


def quantized_activations(model: onnx.ModelProto) -> set[str]:
    """Every activation that should get a Q/DQ pair: inputs of weighted and pooling ops and the skip
    side of residual Adds. Only for graphs whose residual Adds all have a definite skip side."""
    constant = constants(model)
    tensors = {n.input[0] for n in model.graph.node if n.op_type in WEIGHTED + POOLING} - constant
    for node, skip in residual_adds(model):
        assert skip is not None, f"{node.name}: either side may be quantized"
        tensors.add(node.input[skip])
    return tensors


def float_activations(model: onnx.ModelProto) -> set[str]:
    """What TensorRT calibrates: the float graph inputs and float outputs of every non-constant node."""
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    floats = {
        onnx.TensorProto.FLOAT,
        onnx.TensorProto.FLOAT16,
        onnx.TensorProto.DOUBLE,
        onnx.TensorProto.BFLOAT16,
    }
    float_names = {
        vi.name
        for vi in [*graph.input, *graph.value_info, *graph.output]
        if vi.type.tensor_type.elem_type in floats
    }
    constant = constants(model)
    names = {vi.name for vi in graph.input} | {out for node in graph.node for out in node.output}
    return {name for name in names if name in float_names and name not in constant}
