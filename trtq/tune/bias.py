"""Bias correction (Nagel et al. 2019, arXiv:1906.04721): the expected output error quantized weights
leave, ``(W - Wq) @ mean`` per output channel, added to the layer's bias; and writing biases into a
copy of the FP32 model."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
import onnx
from onnx import numpy_helper

from trtq.model.edit import copy_model
from trtq.model.index import GraphIndex
from trtq.tune.layer_inputs import WeightedLayer

Float64 = npt.NDArray[np.float64]


def bias_shift(weights: Float64, quantized: Float64, mean: Float64) -> Float64:
    """Per channel [groups, out per group]: the expected output lost to quantization, to add to the bias."""
    shift: Float64 = np.einsum("gok,gk->go", weights - quantized, mean)
    return shift


def bias_values(model: onnx.ModelProto, layer: WeightedLayer, channels: int) -> npt.NDArray[np.float32]:
    """The layer's bias, zeros when it has none."""
    if not layer.bias:
        return np.zeros(channels, dtype=np.float32)
    tensor = GraphIndex.of(model).stored(layer.bias)
    if tensor is None:
        raise ValueError(f"bias '{layer.bias}' of '{layer.node}' is not a constant")
    return np.asarray(numpy_helper.to_array(tensor), dtype=np.float32).reshape(channels)


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
