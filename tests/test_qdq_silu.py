"""Residual Adds after SiLU written as Mul(x, Sigmoid(x)), as YOLOv5/v8 exports write it: a hand-built
C2f block (Split, two shortcut bottlenecks, Concat), a residual block whose skip is a shared Conv+SiLU
output, and an SE-style gate (Mul(x, Sigmoid(y)), not SiLU). Which Add input gets the Q/DQ is derived
by hand below, from TensorRT's rule: the input that can fuse into its Conv (a Conv + activation chain
read only along the branch) stays float; the other, the skip, is quantized."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from reference_graph import quantized_activations, residual_adds

from trtq.model.session import inference_session
from trtq.qdq import export_qdq

RNG = np.random.default_rng(0)
WEIGHTS: list[onnx.TensorProto] = []


def conv(name: str, x: str, cin: int, cout: int) -> onnx.NodeProto:
    weight = (RNG.standard_normal((cout, cin, 3, 3)) * 0.2).astype(np.float32)
    WEIGHTS.append(numpy_helper.from_array(weight, f"{name}.w"))
    return helper.make_node("Conv", [x, f"{name}.w"], [name], name, pads=[1, 1, 1, 1])


def silu(x: str, out: str, gate_first: bool = False) -> list[onnx.NodeProto]:
    sigmoid = helper.make_node("Sigmoid", [x], [f"{out}.sig"], f"{out}.Sigmoid")
    inputs = [f"{out}.sig", x] if gate_first else [x, f"{out}.sig"]
    return [sigmoid, helper.make_node("Mul", inputs, [out], f"{out}.Mul")]


def yolo_style() -> onnx.ModelProto:
    WEIGHTS.clear()
    nodes = [
        conv("stem", "images", 3, 8),
        *silu("stem", "a0"),
        # C2f: cv1, split in two halves, bottlenecks y1 -> b1 -> b2 with shortcuts, concat, cv2
        conv("cv1", "a0", 8, 8),
        *silu("cv1", "a1"),
        helper.make_node("Split", ["a1", "halves"], ["y0", "y1"], "split", axis=1),
        conv("m0.cv1", "y1", 4, 4),
        *silu("m0.cv1", "a2"),
        conv("m0.cv2", "a2", 4, 4),
        *silu("m0.cv2", "a3"),
        helper.make_node("Add", ["y1", "a3"], ["b1"], "m0.add"),  # ultralytics: x + cv2(cv1(x))
        conv("m1.cv1", "b1", 4, 4),
        *silu("m1.cv1", "a4"),
        conv("m1.cv2", "a4", 4, 4),
        *silu("m1.cv2", "a5"),
        helper.make_node("Add", ["b1", "a5"], ["b2"], "m1.add"),
        helper.make_node("Concat", ["y0", "y1", "b1", "b2"], ["cat"], "concat", axis=1),
        conv("cv2", "cat", 16, 8),
        *silu("cv2", "a6", gate_first=True),  # Mul(Sigmoid(x), x): either order
        # A residual block whose skip a7 is a Conv+SiLU output the branch's Conv also reads.
        conv("r.cv1", "a6", 8, 8),
        *silu("r.cv1", "a7"),
        conv("r.cv2", "a7", 8, 8),
        *silu("r.cv2", "a8"),
        helper.make_node("Add", ["a8", "a7"], ["r"], "r.add"),
        # SE-style gate: a9 * Sigmoid(Conv(a9)) is no SiLU, and r comes from an Add: no Conv branch.
        conv("se.cv1", "r", 8, 8),
        *silu("se.cv1", "a9"),
        conv("se.fc", "a9", 8, 8),
        helper.make_node("Sigmoid", ["se.fc"], ["gate"], "se.Sigmoid"),
        helper.make_node("Mul", ["a9", "gate"], ["m"], "se.Mul"),
        helper.make_node("Add", ["r", "m"], ["out"], "se.add"),
    ]
    halves = numpy_helper.from_array(np.array([4, 4], dtype=np.int64), "halves")
    graph = helper.make_graph(
        nodes,
        "c2f",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 8, 16, 16])],
        [*WEIGHTS, halves],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    return model


# By hand:
#  m0.add(y1, a3): a3 <- Mul(cv2, Sigmoid(cv2)) <- Conv m0.cv2, each read only on that branch: fusable.
#                  y1 comes from a Split: no Conv branch. Skip = slot 0, y1.
#  m1.add(b1, a5): a5 fusable as above; b1 comes from an Add of two activations. Skip = slot 0, b1.
#  r.add(a8, a7):  both are Conv+SiLU outputs; a8 is read by this Add only (fusable), a7 also by
#                  Conv r.cv2 (shared). Skip = slot 1, a7.
#  se.add(r, m):   m = Mul(a9, Sigmoid(se.fc)) gates a9 by another tensor (not SiLU), r comes from an
#                  Add: no Conv branch on either side, no Q/DQ on this Add.
EXPECTED_SKIPS = {"m0.add": (0, "y1"), "m1.add": (0, "b1"), "r.add": (1, "a7")}


def test_silu_branches_put_the_qdq_on_the_skip_input() -> None:
    model = yolo_style()
    scales = {name: 0.05 for name in ["images", *(o for n in model.graph.node for o in n.output)]}
    result = export_qdq(model, scales)
    assert result.residual_adds == 3
    made_by = {out: node for node in result.model.graph.node for out in node.output}
    adds = {node.name: node for node in result.model.graph.node if node.op_type == "Add"}
    original = {node.name: node for node in model.graph.node if node.op_type == "Add"}
    for name, add in adds.items():
        quantized = [made_by[t].op_type == "DequantizeLinear" for t in add.input]
        if name not in EXPECTED_SKIPS:
            assert quantized == [False, False] and list(add.input) == list(original[name].input), name
            continue
        slot, tensor = EXPECTED_SKIPS[name]
        assert quantized == [slot == 0, slot == 1], name
        assert made_by[made_by[add.input[slot]].input[0]].input[0] == tensor  # DQ <- Q <- skip tensor
        assert add.input[1 - slot] == original[name].input[1 - slot]  # the fusable side untouched
    # The quantized graph still runs and stays close to float.
    images = RNG.standard_normal((1, 3, 16, 16)).astype(np.float32)
    reference = inference_session(model).run(None, {"images": images})[0]
    quantized_out = inference_session(result.model).run(None, {"images": images})[0]
    assert np.abs(quantized_out - reference).max() < 0.2 * np.abs(reference).max()
    assert not np.array_equal(quantized_out, reference)


def test_a_sigmoid_read_elsewhere_is_no_fusable_silu() -> None:
    """If the Sigmoid's output also leaves the branch, TensorRT cannot fuse Conv + SiLU + Add; m0.add's
    a3 side is then no Conv branch and the Add is left alone, as before SiLU was recognised."""
    model = yolo_style()
    model.graph.node.append(helper.make_node("Identity", ["a3.sig"], ["leak"], "leak"))
    model.graph.output.append(helper.make_tensor_value_info("leak", TensorProto.FLOAT, [1, 4, 16, 16]))
    scales = {name: 0.05 for name in ["images", *(o for n in model.graph.node for o in n.output)]}
    result = export_qdq(model, scales)
    assert result.residual_adds == 2
    add = next(node for node in result.model.graph.node if node.name == "m0.add")
    assert list(add.input) == ["y1", "a3"]


def test_the_reference_walk_agrees_with_the_hand_derivation() -> None:
    """tests/reference_graph.py, the independent walk the real-model tests use, reads SiLU too."""
    model = yolo_style()
    walked = {add.name: (skip, add.input[skip]) for add, skip in residual_adds(model) if skip is not None}
    assert walked == EXPECTED_SKIPS
    scales = {name: 0.05 for name in ["images", *(o for n in model.graph.node for o in n.output)]}
    assert set(export_qdq(model, scales).activation_scales) == quantized_activations(model)
