"""Tensors computed from the input's shape alone (a YOLO head's anchor grid: ConstantOfShape(Shape(x)),
Range, Expand) are the same on every image, so calibrate must not call them zero by the images'
fault. Checked against ONNX Runtime on nudenet's real YOLOv8n: every tensor the graph walk calls
shape-only has the same values for two unrelated inputs, and the rest of the head does not."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trtq.calib.histogram import TrtHistogram
from trtq.calib.run import CalibrationRun
from trtq.data.batches import BatchStats
from trtq.model.files import load_onnx
from trtq.model.index import activation_tensors, shape_only_tensors
from trtq.model.runner import OnnxRunner
from trtq.resources import resolve_path

MODEL = resolve_path("pkg:nudenet/320n.onnx", Path.cwd())


def test_shape_only_tensors_are_the_same_for_any_image_and_only_they_are() -> None:
    model = load_onnx(MODEL)
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
