"""Read-only facts about an ONNX graph that Q/DQ placement needs: producers, consumers, constants."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import onnx
from onnx import numpy_helper

from trtq.onnx_constants import constant_tensors, stored_tensor


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

    def weight(self, name: str) -> npt.NDArray[np.float32] | None:
        """A float32 weight held by an initializer or a Constant node (Paddle exports use the latter)."""
        tensor = stored_tensor(name, self.initializers, self.producer)
        if tensor is None or tensor.data_type != onnx.TensorProto.FLOAT:
            return None
        return np.asarray(numpy_helper.to_array(tensor), dtype=np.float32)

    def is_activation(self, name: str) -> bool:
        return bool(name) and name not in self.constant
