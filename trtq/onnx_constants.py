"""Which tensors of an ONNX graph are constants: the one rule calibration and Q/DQ placement share.

TensorRT folds initializers, Constant outputs and the outputs of nodes fed only by constants into
weights, so such tensors get neither a calibration scale nor a Q/DQ pair.
"""

from __future__ import annotations

import onnx


def constant_tensors(graph: onnx.GraphProto) -> set[str]:
    """Initializers, Constant outputs, and outputs of nodes whose every input is constant."""
    constant = {init.name for init in graph.initializer}
    for node in graph.node:
        inputs = [name for name in node.input if name]
        if node.op_type == "Constant" or (inputs and all(name in constant for name in inputs)):
            constant.update(node.output)
    return constant
