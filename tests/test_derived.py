"""Histograms calibration derives instead of binning (shape-only ops, zero Pads) against the plain
TensorRT rules applied to the values ONNX Runtime actually computes for those tensors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from conftest import classifier_config, listed_photos
from onnx import TensorProto, helper, numpy_helper
from test_binning_exact import plain_histogram

from trtq.calib.collect import ActivationCollector
from trtq.calib.derived import DerivedTensor, derived_tensors
from trtq.calib.run import collect_histograms
from trtq.config import load_config
from trtq.data.from_config import batch_source, calibration_entries


def int64s(name: str, values: list[int]) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(values, dtype=np.int64), name)


def nearest_floor_resize(source: str, scales: str, output: str) -> onnx.NodeProto:
    """A Resize taking input index floor(o / scale) per axis (PyTorch's nn.Upsample export)."""
    return helper.make_node(
        "Resize",
        [source, "no_roi", scales],
        [output],
        mode="nearest",
        coordinate_transformation_mode="asymmetric",
        nearest_mode="floor",
    )


def with_derivable_nodes(classifier_path: Path, tmp_path: Path) -> tuple[Path, dict[str, bool]]:
    """The text classifier with Pad, Resize and Reshape nodes hung off two of its activations, each
    marked with whether its histogram follows from its input's. Their outputs feed nothing: calibration
    still lists them, as TensorRT does for every layer output."""
    model = onnx.load(str(classifier_path))
    activations = [node.output[0] for node in model.graph.node if node.op_type in ("Relu", "HardSigmoid")]
    a, b = activations[0], activations[3]
    begins_ends = [0, 0, 1, 2, 0, 0, 3, 0]
    model.graph.initializer.extend(
        [
            int64s("pads_init", begins_ends),
            int64s("crop", [0, 0, -1, 0, 0, 0, 2, 2]),
            int64s("flat", [0, -1]),
            numpy_helper.from_array(np.array(0.5, dtype=np.float32), "half"),
            numpy_helper.from_array(np.array([], dtype=np.float32), "no_roi"),
            numpy_helper.from_array(np.array([1, 1, 2, 3], dtype=np.float32), "twice_thrice"),
            numpy_helper.from_array(np.array([1, 1, 1.5, 2], dtype=np.float32), "one_and_a_half"),
        ]
    )
    nodes = [
        # pads from an initializer, no value: zeros only.
        helper.make_node("Pad", [a, "pads_init"], ["pad_init"]),
        # pads computed from constants (Constant -> Mul), value an explicit 0: TensorRT folds them.
        helper.make_node("Constant", [], ["pads_half"], value=int64s("", [0, 0, 2, 1, 0, 0, 2, 3])),
        helper.make_node("Constant", [], ["two"], value=int64s("", [2])),
        helper.make_node("Constant", [], ["zero"], value=numpy_helper.from_array(np.float32(0.0), "")),
        helper.make_node("Mul", ["pads_half", "two"], ["pads_folded"]),
        helper.make_node("Pad", [b, "pads_folded", "zero"], ["pad_folded"]),
        helper.make_node("Reshape", ["pad_folded", "flat"], ["pad_folded_flat"]),
        # not zeros only: another value, a crop, another mode.
        helper.make_node("Pad", [a, "pads_init", "half"], ["pad_half"]),
        helper.make_node("Pad", [b, "crop"], ["pad_crop"]),
        helper.make_node("Pad", [a, "pads_init"], ["pad_reflect"], mode="reflect"),
        # nearest Resize by whole scales taking floor(o / scale): every value 6 times.
        nearest_floor_resize(b, "twice_thrice", "up_floor"),
        # half-pixel rounding, or a scale of 1.5: values repeated unevenly.
        helper.make_node("Resize", [b, "no_roi", "twice_thrice"], ["up_half_pixel"], mode="nearest"),
        nearest_floor_resize(b, "one_and_a_half", "up_uneven"),
        # a Pad of a derived tensor: its input's shape is never seen, so it is measured.
        helper.make_node("Reshape", [a, "flat"], ["a_flat"]),
        helper.make_node("Pad", ["a_flat", "two_sided"], ["pad_of_derived"]),
    ]
    model.graph.initializer.append(int64s("two_sided", [0, 1, 0, 1]))
    model.graph.node.extend(nodes)
    path = tmp_path / "padded.onnx"
    onnx.save(model, str(path))
    derived = {
        "pad_init": True,
        "pad_folded": True,
        "pad_folded_flat": True,
        "pad_half": False,
        "pad_crop": False,
        "pad_reflect": False,
        "a_flat": True,
        "pad_of_derived": False,
        "up_floor": True,
        "up_half_pixel": False,
        "up_uneven": False,
    }
    return path, derived


@pytest.fixture
def padded_config(classifier_path: Path, tmp_path: Path) -> tuple[Path, dict[str, bool]]:
    model, derived = with_derivable_nodes(classifier_path, tmp_path)
    (tmp_path / "images.txt").write_text("\n".join(listed_photos(10)) + "\n")
    config = classifier_config("images.txt", "out/model.cache")
    config["model"] = {"path": str(model)}
    path = tmp_path / "padded.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, derived


def test_derived_histograms_equal_the_plain_rules_on_the_real_values(
    padded_config: tuple[Path, dict[str, bool]],
) -> None:
    config_path, expected = padded_config
    config = load_config(config_path)
    entries = calibration_entries(config)
    collector = ActivationCollector(config.model_path, "x", (2, 3, 48, 192), derive=True)
    assert {name: name in collector.derived for name in expected} == expected
    # The real PP-OCR graph's own shape-only ops are derived too (its Reshape and Identity).
    graph_ops = {node.output[0]: node.op_type for node in onnx.load(str(config.model_path)).graph.node}
    assert {graph_ops[name] for name in collector.derived if name not in expected} == {"Reshape", "Identity"}

    run = collect_histograms(config, entries)
    everything = ActivationCollector(config.model_path, "x", (2, 3, 48, 192))
    batches = [dict(everything.run(batch.data)) for batch in batch_source(config, entries)]
    assert len(batches) == 5 and list(run.histograms) == everything.tensor_names
    for name, h in run.histograms.items():
        counts, value_range, doublings = plain_histogram([batch[name] for batch in batches])
        assert np.array_equal(h.counts, counts), name
        assert (h.range, h.doublings) == (value_range, doublings), name
        assert h.max_abs == max(float(np.abs(batch[name]).max()) for batch in batches), name
    # pad_init is its input's histogram plus the zeros it adds: each batch's (2, C, H, W) padded to
    # (2, C, H + 1 + 3, W + 2 + 0).
    n, c, height, width = batches[0][collector.derived["pad_init"].source].shape
    added = len(batches) * n * c * ((height + 4) * (width + 2) - height * width)
    source = run.histograms[collector.derived["pad_init"].source]
    assert run.histograms["pad_init"].counts[0] - source.counts[0] == added
    assert np.array_equal(run.histograms["pad_init"].counts[1:], source.counts[1:])
    assert collector.derived["up_floor"].repeats == 2 * 3


def test_pads_and_scales_read_from_attributes_in_old_opsets() -> None:
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["r"]),
            helper.make_node("Pad", ["r"], ["zero_pad"], pads=[0, 0, 1, 1, 0, 0, 1, 1]),
            helper.make_node("Pad", ["r"], ["one_pad"], pads=[0, 0, 1, 1, 0, 0, 1, 1], value=1.0),
            helper.make_node("Pad", ["r"], ["edge_pad"], pads=[0, 0, 1, 1, 0, 0, 1, 1], mode="edge"),
            helper.make_node("Upsample", ["r"], ["up"], scales=[1.0, 1.0, 2.0, 2.0]),
            helper.make_node("Upsample", ["r"], ["up_linear"], scales=[1.0, 1.0, 2.0, 2.0], mode="linear"),
        ],
        "old",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 4])],
        [
            helper.make_tensor_value_info(name, TensorProto.FLOAT, None)
            for name in ("zero_pad", "one_pad", "edge_pad", "up", "up_linear")
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 8)])
    derived = derived_tensors(model, ["x", "r", "zero_pad", "one_pad", "edge_pad", "up", "up_linear"])
    assert derived == {
        "zero_pad": DerivedTensor("zero_pad", "r", (0, 0, 1, 1, 0, 0, 1, 1)),
        "up": DerivedTensor("up", "r", repeats=4),
    }
    # (1, 2, 3, 4) padded to (1, 2, 5, 6): 60 - 24 zeros, counted by hand.
    assert derived["zero_pad"].added_zeros((1, 2, 3, 4)) == 36


def test_sources_listed_later_and_custom_domains_are_measured() -> None:
    # ONNX Runtime runs graphs whose nodes are not in topological order; a derived tensor's source
    # must already be known when it is read, so a source listed later is measured. A Transpose in a
    # custom domain may compute anything: only the standard domain's ops derive.
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["a"]),
            helper.make_node("Pad", ["a2"], ["pad_of_later"], pads=[0, 0, 1, 1, 0, 0, 1, 1]),
            helper.make_node("Identity", ["a2"], ["copy_of_later"]),
            helper.make_node("Transpose", ["a"], ["a2"], perm=[0, 1, 3, 2]),
            helper.make_node("Transpose", ["a"], ["custom"], domain="custom.ops"),
        ],
        "unsorted",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 4])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in ("pad_of_later", "custom")],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 10), helper.make_opsetid("custom.ops", 1)]
    )
    names = ["x", "a", "pad_of_later", "copy_of_later", "a2", "custom"]
    assert derived_tensors(model, names) == {"a2": DerivedTensor("a2", "a")}
