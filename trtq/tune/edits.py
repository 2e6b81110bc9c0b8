"""Write tuning results into ONNX models: corrected biases into the FP32 model, tuned INT8 weights and
per-channel scales into the Q/DQ model that trtq.qdq.export made from it (its initializer names)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import onnx
from onnx import numpy_helper

from trtq.model.edit import copy_model
from trtq.model.index import GraphIndex
from trtq.tune.layers import WeightedLayer


@dataclass(frozen=True)
class TunedWeight:
    values: npt.NDArray[np.int8]
    """In the weight's own shape."""
    scales: npt.NDArray[np.float32]
    """One per output channel (the Q/DQ axis)."""


def with_biases(
    model: onnx.ModelProto, layers: Mapping[str, WeightedLayer], biases: Mapping[str, npt.NDArray[np.float32]]
) -> onnx.ModelProto:
    """A copy of ``model`` where each layer named in ``biases`` has that bias (added if it had none)."""
    model = copy_model(model)
    index = GraphIndex.of(model)
    nodes = {node.name: node for node in model.graph.node}
    for node_name, bias in biases.items():
        layer = layers[node_name]
        value = np.asarray(bias, dtype=np.float32)
        stored = index.stored(layer.bias) if layer.bias else None
        if stored is not None:  # an initializer or a Constant node's value: replaced in place
            stored.CopyFrom(numpy_helper.from_array(value, stored.name))
        else:
            name = f"{node_name}_tuned_bias"
            model.graph.initializer.append(numpy_helper.from_array(value, name))
            node = nodes[node_name]
            if len(node.input) < 3:
                node.input.append(name)
            else:
                node.input[2] = name
    return model


def with_weights(qdq_model: onnx.ModelProto, weights: Mapping[str, TunedWeight]) -> onnx.ModelProto:
    """A copy of a trtq Q/DQ model whose INT8 weights and scales are replaced (same names, shapes, types)."""
    model = copy_model(qdq_model)
    initializers = {init.name: init for init in model.graph.initializer}
    for name, tuned in weights.items():
        int8, scale = initializers.get(f"{name}_int8"), initializers.get(f"{name}_scale")
        if int8 is None or scale is None:
            continue  # kept in float (excluded): nothing to replace
        int8.CopyFrom(numpy_helper.from_array(tuned.values.astype(np.int8), int8.name))
        scale.CopyFrom(numpy_helper.from_array(tuned.scales.astype(np.float32), scale.name))
    return model


def bias_values(model: onnx.ModelProto, layer: WeightedLayer, channels: int) -> npt.NDArray[np.float32]:
    """The layer's bias, zeros when it has none."""
    if not layer.bias:
        return np.zeros(channels, dtype=np.float32)
    tensor = GraphIndex.of(model).stored(layer.bias)
    if tensor is None:
        raise ValueError(f"bias '{layer.bias}' of '{layer.node}' is not a constant")
    return np.asarray(numpy_helper.to_array(tensor), dtype=np.float32).reshape(channels)
