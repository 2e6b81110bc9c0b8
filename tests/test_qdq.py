"""Q/DQ export on real models: which edges get Q/DQ, scale values, per-channel weights, checker and ORT."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from conftest import DETECTOR, REPO, TEXT_CLASSIFIER, WriteConfig
from onnx import numpy_helper
from reference_graph import quantized_activations, residual_adds, weighted_with_constant_weights

from trtq.model.index import GraphIndex
from trtq.model.session import inference_session
from trtq.qdq import QdqResult, export_qdq
from trtq.resources import resolve_path


def initializer(model: onnx.ModelProto, name: str) -> np.ndarray:
    return numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == name))


def producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {out: node for node in model.graph.node for out in node.output}


def test_conv_inputs_and_weights_get_qdq_with_the_caches_scales(minmax_classifier) -> None:
    original, scales = minmax_classifier
    result = export_qdq(original, scales)
    model = result.model
    made_by = producers(model)
    source = GraphIndex.of(original)
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert len(convs) == sum(n.op_type == "Conv" for n in original.graph.node)
    # Every Conv/Gemm/MatMul with a constant weight (here: the Convs and the classifier's FC MatMul).
    assert result.summary()["quantized_weights"] == len(weighted_with_constant_weights(original))
    for conv in convs:
        data = made_by[conv.input[0]]
        assert data.op_type == "DequantizeLinear"
        tensor = made_by[data.input[0]].input[0]  # DQ <- Q <- original activation
        assert initializer(model, data.input[1]) == np.float32(scales[tensor])
        assert initializer(model, data.input[2]) == 0 and initializer(model, data.input[2]).dtype == np.int8
        weight_dq = made_by[conv.input[1]]
        assert weight_dq.op_type == "DequantizeLinear"
        assert next(a.i for a in weight_dq.attribute if a.name == "axis") == 0
        name = weight_dq.input[0].removesuffix("_int8")
        weights = source.weight(name)
        assert weights is not None
        expected = np.abs(weights).reshape(weights.shape[0], -1).max(axis=1) / 127
        np.testing.assert_allclose(initializer(model, weight_dq.input[1]), expected, rtol=1e-6)
        q = initializer(model, weight_dq.input[0])
        assert q.dtype == np.int8 and np.abs(q).max() == 127
        assert (initializer(model, weight_dq.input[2]) == 0).all()
    assert result.activation_scales and all(s > 0 for s in result.activation_scales.values())
    assert result.missing_scale == [] and result.only_in_scales == []
    assert next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == 13  # raised from 11
    onnx.checker.check_model(model)


@pytest.fixture(scope="module")
def detector_qdq() -> tuple[onnx.ModelProto, QdqResult]:
    """The demo detector (ConvTranspose, residual Adds with the skip on either slot), every scale 0.01."""
    model = onnx.load(str(resolve_path(DETECTOR, REPO)))
    index = GraphIndex.of(model)
    scales = {
        name: 0.01
        for name in [i.name for i in model.graph.input] + [o for n in model.graph.node for o in n.output]
        if index.is_activation(name)
    }
    return model, export_qdq(model, scales)


def assert_skip_branches_quantized(original: onnx.ModelProto, result: QdqResult) -> None:
    expected = residual_adds(original)  # from a walk of the graph in tests/reference_graph.py
    assert expected and result.residual_adds == len(expected)
    made_by = producers(result.model)
    exported = {n.name: n for n in result.model.graph.node}
    for add, skip in expected:
        assert skip is not None
        inputs = list(exported[add.name].input)
        dq = made_by[inputs[skip]]
        assert dq.op_type == "DequantizeLinear", f"{add.name}: skip input {add.input[skip]} not quantized"
        assert made_by[dq.input[0]].input[0] == add.input[skip]  # DQ <- Q <- the skip tensor
        main = inputs[1 - skip]
        assert main == add.input[1 - skip], f"{add.name}: the Conv branch {main} must stay fusable"


def test_residual_adds_are_quantized_on_the_skip_branch_only(minmax_classifier, detector_qdq) -> None:
    original, scales = minmax_classifier
    assert_skip_branches_quantized(original, export_qdq(original, scales))
    assert_skip_branches_quantized(*detector_qdq)


def test_every_activation_the_graph_walk_expects_is_quantized(minmax_classifier, detector_qdq) -> None:
    original, scales = minmax_classifier
    assert set(export_qdq(original, scales).activation_scales) == quantized_activations(original)
    detector, result = detector_qdq
    assert set(result.activation_scales) == quantized_activations(detector)


def test_qdq_model_runs_in_onnxruntime_close_to_fp32(minmax_classifier, photos: list[Path]) -> None:
    original, scales = minmax_classifier
    qdq = inference_session(export_qdq(original, scales).model)
    fp32 = inference_session(original)
    batch = np.stack(
        [
            cv2.resize(cv2.imread(str(p)), (192, 48)).transpose(2, 0, 1).astype(np.float32) / 127.5 - 1
            for p in photos[8:24]  # held out: the fixture calibrated on the first 8
        ]
    )
    reference, quantized = fp32.run(None, {"x": batch})[0], qdq.run(None, {"x": batch})[0]
    cosine = float((reference * quantized).sum() / np.linalg.norm(reference) / np.linalg.norm(quantized))
    assert cosine > 0.95
    assert not np.array_equal(reference, quantized)  # it really is quantized


def test_bad_missing_and_foreign_scales_are_reported(minmax_classifier) -> None:
    original, scales = minmax_classifier
    edited = dict(scales)
    names = list(export_qdq(original, scales).activation_scales)  # tensors that get Q/DQ
    edited[names[1]] = 0.0
    edited[names[2]] = float("inf")
    del edited[names[3]]
    edited["(Unnamed Layer* 46) [Constant]_output"] = 0.5
    result = export_qdq(original, edited)
    assert result.unusable_scale == {names[1]: 0.0, names[2]: float("inf")}
    assert result.only_in_scales == ["(Unnamed Layer* 46) [Constant]_output"]
    assert result.missing_scale == [names[3]]
    for tensor in result.unusable_scale:
        assert tensor not in result.activation_scales


def test_exclusions_keep_layers_in_float(minmax_classifier) -> None:
    original, scales = minmax_classifier
    first_conv = next(n for n in original.graph.node if n.op_type == "Conv")
    result = export_qdq(original, scales, exclude=[first_conv.name])
    assert result.excluded_nodes == [first_conv.name]
    conv = next(n for n in result.model.graph.node if n.name == first_conv.name)
    assert list(conv.input) == list(first_conv.input)
    assert result.summary()["quantized_weights"] == len(weighted_with_constant_weights(original)) - 1


def test_conv_transpose_weights_use_axis_1(detector_qdq) -> None:
    model, result = detector_qdq
    made_by = producers(result.model)
    deconvs = [n for n in result.model.graph.node if n.op_type == "ConvTranspose"]
    assert deconvs and len(deconvs) == sum(n.op_type == "ConvTranspose" for n in model.graph.node)
    for node in deconvs:
        dq = made_by[node.input[1]]
        assert next(a.i for a in dq.attribute if a.name == "axis") == 1
        assert initializer(result.model, dq.input[1]).shape == (
            initializer(result.model, dq.input[0]).shape[1],
        )
    assert not [
        n
        for n in result.model.graph.node
        if n.op_type == "Constant"
        and n.output[0]
        in {
            d.input[0].removesuffix("_int8")
            for d in result.model.graph.node
            if d.op_type == "DequantizeLinear"
        }
    ]


def test_qdq_command_writes_a_checked_model(write_config: WriteConfig, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from trtq.cli.main import app

    config = write_config(n_images=4)
    runner = CliRunner()
    missing = runner.invoke(app, ["qdq", str(config), "-o", str(tmp_path / "m.onnx")])
    assert missing.exit_code == 1 and "no calibration cache" in missing.output
    assert runner.invoke(app, ["calibrate", str(config)]).exit_code == 0
    result = runner.invoke(app, ["qdq", str(config), "-o", str(tmp_path / "m.onnx")])
    assert result.exit_code == 0, result.output
    model = onnx.load(str(tmp_path / "m.onnx"))
    onnx.checker.check_model(model)
    original = onnx.load(str(resolve_path(TEXT_CLASSIFIER, REPO)))
    quantize_nodes = sum(n.op_type == "QuantizeLinear" for n in model.graph.node)
    assert quantize_nodes == len(quantized_activations(original))
    assert (tmp_path / "m.onnx.json").is_file()
