"""Tensors computed from the input's shape alone (a YOLO head's anchor grid: ConstantOfShape(Shape(x)),
Range, Expand) are the same on every image, so calibrate must not call them zero by the images'
fault. Checked against ONNX Runtime on nudenet's real YOLOv8n: every tensor the graph walk calls
shape-only has the same values for two unrelated inputs, and the rest of the head does not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trtq.calib.histogram import TrtHistogram
from trtq.calib.run import CalibrationRun
from trtq.data.batches import BatchStats
from trtq.model.files import load_onnx
from trtq.model.index import activation_tensors, shape_only_tensors
from trtq.model.runner import OnnxRunner
from trtq.resources import resolve_path

NUDENET = "pkg:nudenet/320n.onnx"


def test_shape_only_tensors_are_the_same_for_any_image_and_only_they_are() -> None:
    pytest.importorskip("nudenet", reason="the YOLOv8n ships in nudenet: pip install --no-deps nudenet")
    model = load_onnx(resolve_path(NUDENET, Path.cwd()))
    floats = activation_tensors(model)
    shape_only = shape_only_tensors(model)
    assert any(n.op_type == "ConstantOfShape" and n.output[0] in shape_only for n in model.graph.node)
    exposed = sorted(set(floats) - {"images"})
    runner = OnnxRunner(model, expose=exposed, elem_types=floats)
    rng = np.random.default_rng(0)
    first, second = (
        runner.infer({"images": rng.random((1, 3, 320, 320), dtype=np.float32) * scale})
        for scale in (1.0, 0.5)
    )
    same = {name for name in exposed if np.array_equal(first[name], second[name])}
    assert shape_only & set(floats) <= same
    # The converse: every float tensor the two images agree on is shape-only (a value-dependent one
    # agreeing exactly on random inputs would be a dead branch, which this model does not have).
    assert same <= shape_only


def test_zeros_of_the_anchor_grid_are_not_blamed_on_the_images() -> None:
    run = CalibrationRun(
        {"grid": TrtHistogram(), "dead": TrtHistogram()}, BatchStats(), 99.99, shape_only={"grid"}
    )
    warning = run.zero_warning()
    assert warning is not None and "'dead'" in warning and "grid" not in warning


def test_a_shape_that_follows_values_is_not_shape_only() -> None:
    """Shape(NonZero(Relu(x))) changes with x's values, ConstantOfShape(Shape(x)) does not: checked
    on two inputs by ONNX Runtime, and a random generator (no inputs) is never shape-only."""
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("NonZero", ["r"], ["nz"]),
        helper.make_node("Shape", ["nz"], ["nz_shape"]),
        helper.make_node("Cast", ["nz_shape"], ["counted"], to=TensorProto.FLOAT),
        helper.make_node("Shape", ["x"], ["x_shape"]),
        helper.make_node(
            "ConstantOfShape", ["x_shape"], ["grid"], value=helper.make_tensor("v", 1, [1], [0.0])
        ),
        helper.make_node("RandomNormal", [], ["noise"], shape=[2]),
    ]
    graph = helper.make_graph(
        nodes,
        "shapes",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("counted", "grid", "noise")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert shape_only_tensors(model) == {"x_shape", "grid"}
    runner = OnnxRunner(model)
    first = runner.infer({"x": np.array([[1, -1, 1], [-1, -1, -1]], np.float32)})
    second = runner.infer({"x": np.ones((2, 3), np.float32)})
    assert np.array_equal(first["grid"], second["grid"])
    assert not np.array_equal(first["counted"], second["counted"])
