"""Raising the opset 12 -> 13 for per-channel Q/DQ keeps each Softmax over its last axis one node fed by
the op that fed it (ONNX's converter wraps it in Flatten/Reshape), and keeps every output's value.
The PP-OCRv4 recognizer (opset 12, three Softmax over the last axis, two behind computed Reshapes)
is the real case; hand-built models check that a Softmax over an inner axis keeps its old meaning."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from conftest import REPO
from onnx import TensorProto, helper

from trtq.config.schema import PreprocessSection
from trtq.data.preprocess import Preprocessor
from trtq.model.index import GraphIndex
from trtq.model.session import inference_session
from trtq.qdq.export import at_least_qdq_opset, export_qdq
from trtq.resources import resolve_path

RECOGNIZER = "pkg:rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx"


def opset_of(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def neighbours(model: onnx.ModelProto, op_type: str) -> dict[str, tuple[str, str, list[str]]]:
    """Each ``op_type`` node's output -> (its input, the producer's op type, the nodes reading it,
    directly or through a Q/DQ pair)."""
    made_by = {out: node for node in model.graph.node for out in node.output}

    def readers(tensor: str) -> list[str]:
        found = []
        for node in model.graph.node:
            if tensor in node.input:
                found += (
                    readers(node.output[0])
                    if node.op_type in ("QuantizeLinear", "DequantizeLinear")
                    else [node.name]
                )
        return found

    return {
        node.output[0]: (node.input[0], made_by[node.input[0]].op_type, readers(node.output[0]))
        for node in model.graph.node
        if node.op_type == op_type
    }


@pytest.fixture(scope="module")
def recognizer() -> onnx.ModelProto:
    model = onnx.load(str(resolve_path(RECOGNIZER, REPO)))
    assert opset_of(model) == 12
    return model


def test_recognizer_softmax_is_fed_and_read_as_before_after_export_qdq(recognizer: onnx.ModelProto) -> None:
    index = GraphIndex.of(recognizer)
    scales = {
        name: 0.01
        for name in [i.name for i in recognizer.graph.input]
        + [o for n in recognizer.graph.node for o in n.output]
        if index.is_activation(name)
    }
    exported = export_qdq(recognizer, scales).model
    assert opset_of(exported) == 13
    before, after = neighbours(recognizer, "Softmax"), neighbours(exported, "Softmax")
    assert len(before) == 3 and after == before  # same input, producer kind and readers (through Q/DQ)
    for op_type in ("Flatten", "Reshape", "Shape"):
        assert sum(n.op_type == op_type for n in exported.graph.node) == sum(
            n.op_type == op_type for n in recognizer.graph.node
        ), op_type
    # The converter's wrappers were unnamed (its Squeeze axes Constants are, like Paddle's own).
    assert all(node.name for node in exported.graph.node if node.op_type != "Constant")


def test_recognizer_outputs_are_unchanged_by_the_opset_raise(
    recognizer: onnx.ModelProto, photos: list[Path]
) -> None:
    """Real inputs: photo strips preprocessed as PP-OCR's recognizer does (48 high, padded to 320)."""
    preprocess = Preprocessor(
        PreprocessSection(
            color="bgr", resize="fixed_height", pad_normalized=0, scale=1 / 255, mean=[0.5], std=[0.5]
        ),
        48,
        320,
    )
    strips = [image[top : top + 40] for image in map(cv2.imread, map(str, photos[:2])) for top in (0, 100)]
    batch = np.stack([preprocess(strip) for strip in strips])
    raised = at_least_qdq_opset(recognizer)
    assert opset_of(raised) == 13 and not any(n.op_type == "Flatten" for n in raised.graph.node)
    (expected,) = inference_session(recognizer).run(None, {"x": batch})
    (actual,) = inference_session(raised).run(None, {"x": batch})
    assert expected.shape == (4, 40, 6625)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-6)


def softmax_model(op_type: str, axis: int | None, shape: list[int] | None) -> onnx.ModelProto:
    """x -> Relu -> op_type(axis) -> y at opset 11; ``shape`` None leaves the input's rank unknown."""
    attributes = {} if axis is None else {"axis": axis}
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["r"], "relu"),
            helper.make_node(op_type, ["r"], ["y"], "soft", **attributes),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])


def old_softmax(x: np.ndarray, axis: int, log: bool) -> np.ndarray:
    """Opset < 13: flatten to 2-D at ``axis``, normalise over the second dimension."""
    flat = x.reshape(int(np.prod(x.shape[:axis])), -1).astype(np.float64)
    shifted = flat - flat.max(axis=1, keepdims=True)
    log_probabilities = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return (log_probabilities if log else np.exp(log_probabilities)).reshape(x.shape)


@pytest.mark.parametrize("op_type", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize(
    ("axis", "shape", "unwrapped"),
    [
        (2, [2, 3, 4], True),  # the last axis of a known rank
        (-1, None, True),  # the last axis whatever the rank
        (1, [2, 3, 4], False),  # an inner axis: the old meaning needs the wrapper
        (None, [2, 3, 4], False),  # default axis 1
        (2, None, False),  # rank unknown: cannot tell
    ],
)
def test_only_last_axis_nodes_are_unwrapped_and_every_meaning_is_kept(
    op_type: str, axis: int | None, shape: list[int] | None, unwrapped: bool
) -> None:
    model = softmax_model(op_type, axis, shape)
    raised = at_least_qdq_opset(model)
    assert opset_of(raised) == 13
    assert (not any(n.op_type == "Flatten" for n in raised.graph.node)) == unwrapped
    x = np.random.default_rng(1).standard_normal((2, 3, 4)).astype(np.float32)
    (y,) = inference_session(raised).run(None, {"x": x})
    expected = old_softmax(np.maximum(x, 0), 1 if axis is None else axis % 3, log=op_type == "LogSoftmax")
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
