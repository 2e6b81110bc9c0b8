"""The values of constant tensors, folded as TensorRT folds them: stored ones read directly, computed
ones (a Resize's scales from Shape arithmetic, say) by running their nodes in ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx

from trtq.model.index import GraphIndex


def constant_values(model: onnx.ModelProto, names: set[str]) -> dict[str, np.ndarray]:
    """The values of constant tensors, as TensorRT folds them: initializers and Constant nodes' tensors
    read directly, the rest computed by running the nodes that produce them in ONNX Runtime. A name
    whose nodes ONNX Runtime cannot run is left out (its callers then treat the value as unknown)."""
    graph = model.graph
    index = GraphIndex.of(model)
    initializers, producer = index.initializers, index.producer
    values = {
        name: onnx.numpy_helper.to_array(tensor)
        for name in names
        if (tensor := index.stored(name)) is not None
    }
    computed = sorted(names & index.constant - set(values))
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
    from trtq.model.runner import OnnxRunner  # ONNX Runtime: only when something is computed

    try:
        results = OnnxRunner(folded).infer({}, computed)
    except Exception:  # an op or a type ONNX Runtime cannot run alone: the values stay unknown
        return values
    values.update((name, np.asarray(result)) for name, result in results.items())
    return values
