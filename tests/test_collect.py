"""Activation collection in ONNX Runtime on the real PP-OCR classifier."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from trtq.calib.collect import ActivationCollector
from trtq.model.index import activation_tensors


def test_calibrated_tensors_are_float_activations_not_constants(classifier_path: Path) -> None:
    model = onnx.load(str(classifier_path))
    names = activation_tensors(model)
    constant_outputs = {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    conv_outputs = [n.output[0] for n in model.graph.node if n.op_type == "Conv"]
    assert next(iter(names)) == "x"
    assert set(conv_outputs) <= set(names)
    assert not constant_outputs & set(names)
    assert model.graph.output[0].name in names
    assert all(elem == onnx.TensorProto.FLOAT for elem in names.values())


def test_collected_activations_match_the_plain_model(classifier_path: Path, photos: list[Path]) -> None:
    import cv2

    batch = (
        np.stack([cv2.resize(cv2.imread(str(p)), (192, 48)).transpose(2, 0, 1) for p in photos[:3]]).astype(
            np.float32
        )
        / 127.5
        - 1
    )
    collector = ActivationCollector(classifier_path, "x", (3, 3, 48, 192))
    collected = dict(collector.run(batch))
    assert set(collected) == set(collector.tensor_names)
    plain = ort.InferenceSession(str(classifier_path), providers=["CPUExecutionProvider"])
    output_name = plain.get_outputs()[0].name
    (expected,) = plain.run([output_name], {"x": batch})
    np.testing.assert_allclose(collected[output_name], expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(collected[output_name].sum(axis=1), 1.0, atol=1e-5)  # softmax over 2 classes
    assert collected["x"] is batch


def test_config_input_must_fit_the_model(classifier_path: Path) -> None:
    from trtq.errors import TrtqError

    with pytest.raises(
        TrtqError, match=r"input 'image' \(inputs.0.name\) is not in the model; its inputs are \['x'\]"
    ):
        ActivationCollector(classifier_path, "image", (1, 3, 48, 192))
    with pytest.raises(
        TrtqError,
        match=r"has shape \['\?', 3, '\?', '\?'\], the config's calibration shape is \[1, 1, 48, 192\]",
    ):
        ActivationCollector(classifier_path, "x", (1, 1, 48, 192))
    with pytest.raises(TrtqError, match="calibration shape is \\[1, 3, 48\\]"):
        ActivationCollector(classifier_path, "x", (1, 3, 48))


def test_a_model_whose_input_is_not_float_is_refused_by_name(classifier_path: Path, tmp_path: Path) -> None:
    # Calibration feeds the preprocessed float32 images: a uint8 input would fail inside ONNX Runtime.
    from trtq.errors import TrtqError

    model = onnx.load(str(classifier_path))
    model.graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.UINT8
    path = tmp_path / "uint8_input.onnx"
    onnx.save(model, str(path))
    with pytest.raises(TrtqError, match=r"uint8_input.onnx: input 'x' takes uint8; calibration feeds it"):
        ActivationCollector(path, "x", (1, 3, 48, 192))


def test_a_double_activation_beyond_float32_becomes_inf_without_a_numpy_warning(tmp_path: Path) -> None:
    # y = double(x) * 1e40 is finite in double and partly infinite in float32, where TensorRT
    # calibrates: the collector hands over inf (named later as a non-finite tensor), printing nothing.
    import warnings

    graph = onnx.helper.make_graph(
        [
            onnx.helper.make_node("Cast", ["x"], ["d"], to=onnx.TensorProto.DOUBLE),
            onnx.helper.make_node("Mul", ["d", "k"], ["y"]),
        ],
        "double",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.DOUBLE, [1, 4])],
        [onnx.helper.make_tensor("k", onnx.TensorProto.DOUBLE, [], [1e40])],
    )
    onnx.save(onnx.helper.make_model(graph), str(tmp_path / "double.onnx"))
    collector = ActivationCollector(tmp_path / "double.onnx", "x", (1, 4))
    x = np.array([[0.0, 1e-3, 1.0, -2.0]], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        found = dict(collector.run(x))
    expected = np.array([[0.0, np.float64(x[0, 1]) * 1e40, np.inf, -np.inf]]).astype(np.float32)
    assert found["y"].dtype == np.float32 and np.array_equal(found["y"], expected)
    assert np.isfinite(expected[0, 1])
