"""Unusual but valid float models, made ready the same way for every command (trtq/model/prepare.py):
unnamed nodes, control flow, and models that are no float model at all."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from trtq.compare.sensitivity import analyse_sensitivity
from trtq.errors import TrtqError
from trtq.model.files import load_onnx
from trtq.model.index import activation_tensors
from trtq.model.prepare import unquantized_in_control_flow
from trtq.qdq.export import export_qdq
from trtq.tune.layer_inputs import weighted_layers

RNG = np.random.default_rng(0)


def weight(name: str, shape: list[int]) -> onnx.TensorProto:
    return numpy_helper.from_array(RNG.standard_normal(shape).astype(np.float32), name)


def save(tmp: Path, nodes: list[onnx.NodeProto], initializers: list[onnx.TensorProto], name: str) -> Path:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])],
        initializers,
    )
    path = tmp / name
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def unnamed_residual(tmp: Path) -> Path:
    """Conv -> Relu -> Conv, plus the block input: a residual Add, every node without a name."""
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r"]),
        helper.make_node("Conv", ["r", "w2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c2", "x"], ["y"]),
    ]
    return save(tmp, nodes, [weight("w1", [3, 3, 3, 3]), weight("w2", [3, 3, 3, 3])], "unnamed.onnx")


def test_unnamed_nodes_get_one_name_everywhere(tmp_path: Path) -> None:
    path = unnamed_residual(tmp_path)
    model = load_onnx(path)
    names = [node.name for node in model.graph.node]
    assert names == ["Conv_0", "Relu_1", "Conv_2", "Add_3"]  # op type and position: the same every load
    assert [node.name for node in load_onnx(path).graph.node] == names
    assert [layer.node for layer in weighted_layers(model)] == ["Conv_0", "Conv_2"]
    # qdq.exclude patterns and the exported Q/DQ model use the same names.
    scales = dict.fromkeys(activation_tensors(model), 0.01)
    result = export_qdq(model, scales, ["Conv_2"])
    assert result.excluded_nodes == ["Conv_2"]
    assert {"Conv_0", "Conv_2", "Add_3"} <= {node.name for node in result.model.graph.node}
    # sensitivity proposes real node names (it proposed [""] for unnamed nodes, which excluded all).
    batches = [RNG.standard_normal((1, 3, 8, 8)).astype(np.float32) for _ in range(2)]
    proposal = analyse_sensitivity(model, scales, "x", batches, 2, worst=1).proposal
    assert proposal and set(proposal) <= set(names)


def constant_if(tmp: Path, condition: bool) -> Path:
    """Relu(x) -> If(constant condition: then Mul(r, 2), else Identity(r)) -> Conv: the branches read
    the activation r from the graph around them."""
    then_branch = helper.make_graph(
        [helper.make_node("Mul", ["r", "two"], ["doubled"], "double")],
        "then",
        [],
        [helper.make_tensor_value_info("doubled", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.array(2.0, np.float32), "two")],
    )
    else_branch = helper.make_graph(
        [helper.make_node("Identity", ["r"], ["same"], "same")],
        "else",
        [],
        [helper.make_tensor_value_info("same", TensorProto.FLOAT, None)],
    )
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], "relu"),
        helper.make_node("If", ["cond"], ["chosen"], "if", then_branch=then_branch, else_branch=else_branch),
        helper.make_node("Conv", ["chosen", "w"], ["y"], "conv", pads=[1, 1, 1, 1]),
    ]
    cond = numpy_helper.from_array(np.array(condition), "cond")
    return save(tmp, nodes, [cond, weight("w", [3, 3, 3, 3])], f"if_{condition}.onnx")


@pytest.mark.parametrize("condition", [True, False])
def test_an_if_with_a_constant_condition_is_folded_and_its_output_quantized(
    tmp_path: Path, condition: bool
) -> None:
    model = load_onnx(constant_if(tmp_path, condition))
    assert "If" not in {node.op_type for node in model.graph.node}
    taken = "doubled" if condition else "same"
    assert {"r", taken, "chosen", "y"} <= set(activation_tensors(model))
    # The Conv after the If reads a quantized activation (it was left in float: the If's output
    # counted as constant because its only listed input, the condition, is).
    result = export_qdq(model, dict.fromkeys(activation_tensors(model), 0.01))
    assert "chosen" in result.activation_scales and not result.missing_scale
    assert unquantized_in_control_flow(model) == []


def test_a_data_dependent_if_is_kept_and_its_inner_tensors_named(tmp_path: Path) -> None:
    path = constant_if(tmp_path, True)
    model = onnx.load(str(path))
    model.graph.initializer.pop(0)  # the condition becomes a graph input: known only at run time
    model.graph.input.append(helper.make_tensor_value_info("cond", TensorProto.BOOL, []))
    onnx.save(model, str(path))
    loaded = load_onnx(path)
    assert "If" in {node.op_type for node in loaded.graph.node}
    assert {"r", "chosen"} <= set(activation_tensors(loaded))  # the If's output is no constant
    assert sorted(unquantized_in_control_flow(loaded)) == ["doubled", "same"]


def test_files_that_are_no_float_model_are_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(TrtqError, match=r"empty\.onnx: not an ONNX model"):
        load_onnx(empty)
    text = tmp_path / "text.onnx"
    text.write_text("not protobuf at all, just text\n" * 4)
    with pytest.raises(TrtqError, match=r"text\.onnx: not a"):
        load_onnx(text)
    model = load_onnx(unnamed_residual(tmp_path))
    quantized = tmp_path / "quantized.onnx"
    onnx.save(export_qdq(model, dict.fromkeys(activation_tensors(model), 0.01)).model, str(quantized))
    with pytest.raises(TrtqError, match=r"quantized.onnx: the model is quantized already \(\d+ Q/DQ nodes"):
        load_onnx(quantized)


def test_calibrate_and_qdq_name_what_a_data_dependent_if_leaves_in_float(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from trtq.cli.main import app

    # x -> Relu -> If(condition computed from the data: ReduceMax(r) > 1) -> Conv
    model = onnx.load(str(constant_if(tmp_path, True)))
    model.graph.initializer.pop(0)
    model.graph.node.insert(1, helper.make_node("ReduceMax", ["r"], ["top"], "top", keepdims=0))
    model.graph.node.insert(2, helper.make_node("Greater", ["top", "one"], ["cond"], "greater"))
    model.graph.initializer.append(numpy_helper.from_array(np.array(1.0, np.float32), "one"))
    onnx.save(model, str(tmp_path / "dynamic_if.onnx"))
    import cv2
    import yaml

    for index in range(2):
        cv2.imwrite(str(tmp_path / f"p{index}.png"), RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    (tmp_path / "images.txt").write_text("p0.png\np1.png\n")
    config = {
        "model": {"path": "dynamic_if.onnx"},
        "inputs": [{"name": "x", "shape": [1, 3, 8, 8]}],
        "preprocess": {"color": "bgr", "scale": 1 / 255},
        "calibration": {"images": "images.txt", "cache": "out/m.cache"},
    }
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(config))
    runner = CliRunner()
    for args in (
        ["calibrate", str(tmp_path / "m.yaml")],
        ["qdq", str(tmp_path / "m.yaml"), "-o", str(tmp_path / "q.onnx")],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert "2 tensors inside control flow that cannot be folded" in result.output, args
        assert "'doubled'" in result.output or "doubled" in result.output
