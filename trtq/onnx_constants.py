"""Which tensors of an ONNX graph are constants: the one rule calibration and Q/DQ placement share.

TensorRT folds initializers, Constant outputs and the outputs of nodes fed only by constants into
weights, so such tensors get neither a calibration scale nor a Q/DQ pair.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx


def constant_tensors(graph: onnx.GraphProto) -> set[str]:
    """Initializers, Constant outputs, and outputs of nodes whose every input is constant."""
    constant = {init.name for init in graph.initializer}
    for node in graph.node:
        inputs = [name for name in node.input if name]
        if node.op_type == "Constant" or (inputs and all(name in constant for name in inputs)):
            constant.update(node.output)
    return constant


def stored_tensor(
    name: str, initializers: Mapping[str, onnx.TensorProto], producer: Mapping[str, onnx.NodeProto]
) -> onnx.TensorProto | None:
    """The tensor an initializer or a Constant node's ``value`` holds (Paddle exports use the latter);
    None for anything computed."""
    tensor = initializers.get(name)
    node = producer.get(name)
    if tensor is None and node is not None and node.op_type == "Constant":
        tensor = next((a.t for a in node.attribute if a.name == "value"), None)
    return tensor


def constant_values(model: onnx.ModelProto, names: set[str]) -> dict[str, np.ndarray]:
    """The values of constant tensors, as TensorRT folds them: initializers and Constant nodes' tensors
    read directly, the rest computed by running the nodes that produce them in ONNX Runtime. A name
    whose nodes ONNX Runtime cannot run is left out (its callers then treat the value as unknown)."""
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    producer = {output: node for node in graph.node for output in node.output}
    values = {
        name: onnx.numpy_helper.to_array(tensor)
        for name in names
        if (tensor := stored_tensor(name, initializers, producer)) is not None
    }
    computed = sorted(names & constant_tensors(graph) - set(values))
    if not computed:
        return values
    needed: set[str] = set()
    stack = list(computed)
    while stack:
        name = stack.pop()
        if name in needed or name not in producer:
            continue
        needed.add(name)
        stack.extend(producer[name].input)
    nodes = [node for node in graph.node if any(output in needed for output in node.output)]
    used = {name for node in nodes for name in node.input}
    folded = onnx.helper.make_model(
        onnx.helper.make_graph(
            nodes,
            "constants",
            [],
            [onnx.helper.make_empty_tensor_value_info(name) for name in computed],
            [initializers[name] for name in sorted(used & set(initializers))],
        ),
        opset_imports=model.opset_import,
        ir_version=model.ir_version,
    )
    from trtq.onnxruntime_session import inference_session  # ONNX Runtime: only when something is computed

    try:
        results = inference_session(folded).run(computed, {})
    except Exception:  # an op or a type ONNX Runtime cannot run alone: the values stay unknown
        return values
    values.update((name, np.asarray(result)) for name, result in zip(computed, results, strict=True))
    return values
