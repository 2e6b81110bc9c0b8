"""Weight axes of Gemm and MatMul on a tiny hand-built graph: scales written out by hand per output channel,
and a 1-D MatMul weight (a vector MatMul reduces away: no output channel) quantized per tensor."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from trtq.model.session import inference_session
from trtq.qdq import export_qdq

# x is [2, 4] (K = 4). Each weight's largest |value| per output channel is written beside it.
GEMM_TRANS_B = np.array(  # [N=3, K=4]: output channels are rows (axis 0)
    [[1.0, -2.0, 0.5, 0.25], [0.1, 0.2, -0.3, 0.05], [-4.0, 1.0, 1.0, 1.0]], dtype=np.float32
)
GEMM_TRANS_B_AMAX = [2.0, 0.3, 4.0]
GEMM_PLAIN = np.array(  # [K=4, N=2]: output channels are columns (axis 1)
    [[1.0, 0.5], [-3.0, 0.25], [0.5, -0.75], [2.0, 0.1]], dtype=np.float32
)
GEMM_PLAIN_AMAX = [3.0, 0.75]
MATMUL_2D = np.array(  # [K=4, N=3]: axis 1
    [[0.5, 1.0, -6.0], [-0.5, 2.0, 1.0], [0.25, -1.5, 0.0], [0.125, 0.5, 2.0]], dtype=np.float32
)
MATMUL_2D_AMAX = [0.5, 2.0, 6.0]
MATMUL_3D = np.stack([MATMUL_2D, -2 * MATMUL_2D])  # [2, K=4, N=3]: the last axis (2)
MATMUL_3D_AMAX = [1.0, 4.0, 12.0]  # the second slice doubles every column's largest value
MATMUL_1D = np.array([0.5, -8.0, 2.0, 1.0], dtype=np.float32)  # [K=4]: one per-tensor scale
MATMUL_1D_AMAX = 8.0


def tiny_model() -> onnx.ModelProto:
    weights = {
        "gemm_trans_b": GEMM_TRANS_B,
        "gemm_plain": GEMM_PLAIN,
        "matmul_2d": MATMUL_2D,
        "matmul_3d": MATMUL_3D,
        "matmul_1d": MATMUL_1D,
    }
    nodes = [
        helper.make_node("Gemm", ["x", "gemm_trans_b"], ["y_gemm_trans_b"], "gemm_trans_b_node", transB=1),
        helper.make_node("Gemm", ["x", "gemm_plain"], ["y_gemm_plain"], "gemm_plain_node"),
        helper.make_node("MatMul", ["x", "matmul_2d"], ["y_matmul_2d"], "matmul_2d_node"),
        helper.make_node("MatMul", ["x", "matmul_3d"], ["y_matmul_3d"], "matmul_3d_node"),
        helper.make_node("MatMul", ["x", "matmul_1d"], ["y_matmul_1d"], "matmul_1d_node"),
    ]
    shapes = {
        "y_gemm_trans_b": [2, 3],
        "y_gemm_plain": [2, 2],
        "y_matmul_2d": [2, 3],
        "y_matmul_3d": [2, 2, 3],
        "y_matmul_1d": [2],
    }
    graph = helper.make_graph(
        nodes,
        "weights",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name, shape in shapes.items()],
        [numpy_helper.from_array(values, name) for name, values in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    return model


def weight_dq(model: onnx.ModelProto, node_name: str) -> tuple[onnx.NodeProto, np.ndarray, np.ndarray]:
    """The DequantizeLinear feeding a node's weight input, its scales and its int8 values."""
    made_by = {out: n for n in model.graph.node for out in n.output}
    node = next(n for n in model.graph.node if n.name == node_name)
    dq = made_by[node.input[1]]
    assert dq.op_type == "DequantizeLinear"
    init = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return dq, init[dq.input[1]], init[dq.input[0]]


def axis_of(dq: onnx.NodeProto) -> int | None:
    return next((a.i for a in dq.attribute if a.name == "axis"), None)


@pytest.mark.parametrize(
    ("node_name", "axis", "amax"),
    [
        ("gemm_trans_b_node", 0, GEMM_TRANS_B_AMAX),
        ("gemm_plain_node", 1, GEMM_PLAIN_AMAX),
        ("matmul_2d_node", 1, MATMUL_2D_AMAX),
        ("matmul_3d_node", 2, MATMUL_3D_AMAX),
    ],
)
def test_per_channel_axis_of_gemm_and_matmul_weights(node_name: str, axis: int, amax: list[float]) -> None:
    result = export_qdq(tiny_model(), {"x": 0.01})
    dq, scale, quantized = weight_dq(result.model, node_name)
    assert axis_of(dq) == axis
    np.testing.assert_allclose(scale, np.array(amax, dtype=np.float32) / 127, rtol=1e-7)
    assert quantized.dtype == np.int8
    # The largest value of every channel maps to +-127.
    reduce = tuple(a for a in range(quantized.ndim) if a != axis)
    assert (np.abs(quantized.astype(np.int32)).max(axis=reduce) == 127).all()


def test_1d_matmul_weight_is_quantized_per_tensor() -> None:
    model = tiny_model()
    result = export_qdq(model, {"x": 0.01})
    dq, scale, quantized = weight_dq(result.model, "matmul_1d_node")
    assert axis_of(dq) is None  # no output-channel axis
    assert scale.shape == () and scale == np.float32(MATMUL_1D_AMAX / 127)
    # 0.5, -8, 2, 1 in steps of 8/127, rounded to the nearest step.
    np.testing.assert_array_equal(quantized, np.array([8, -127, 32, 16], dtype=np.int8))
    assert result.weight_channels["matmul_1d"] == 1
    assert result.weight_channels["gemm_trans_b"] == 3 and result.weight_channels["gemm_plain"] == 2

    x = np.array([[1.0, 0.5, -0.25, 0.75], [-1.0, 0.25, 0.5, 0.0]], dtype=np.float32)
    outputs = dict(
        zip(
            [o.name for o in model.graph.output],
            inference_session(result.model).run(None, {"x": x}),
            strict=True,
        )
    )
    # x is on the 0.01 grid, so the only error left is the weights' rounding, at most half a step each.
    step = MATMUL_1D_AMAX / 127
    expected = x @ (np.array([8, -127, 32, 16]) * step)
    np.testing.assert_allclose(outputs["y_matmul_1d"], expected, rtol=1e-5)
    assert np.abs(outputs["y_matmul_1d"] - x @ MATMUL_1D).max() <= np.abs(x).sum(axis=1).max() * step / 2
