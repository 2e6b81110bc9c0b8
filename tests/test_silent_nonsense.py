"""Results that are nonsense are said, not written silently: all-zero activations, non-finite FP32
outputs, qdq.exclude patterns that match nothing (issue 19.4)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import yaml
from conftest import classifier_config
from onnx import TensorProto, helper, numpy_helper
from test_cli import run_cli

from trtq.cache import read_cache
from trtq.compare.models import compare_models
from trtq.compare.sensitivity import analyse_sensitivity
from trtq.errors import TrtqError
from trtq.model.index import activation_tensors
from trtq.qdq.export import export_qdq


def test_all_black_images_give_zero_scales_and_a_warning_naming_them(tmp_path: Path) -> None:
    for index in range(4):
        cv2.imwrite(str(tmp_path / f"black{index}.png"), np.zeros((48, 192, 3), np.uint8))
    (tmp_path / "images.txt").write_text("".join(f"black{index}.png\n" for index in range(4)))
    # Preprocessing that keeps black at 0 (no mean): the input and what follows it stay zero.
    spec = classifier_config("images.txt", "out/model.cache", input_range="histogram")
    spec["preprocess"] = {"color": "bgr", "scale": 1 / 255}
    (tmp_path / "model.yaml").write_text(yaml.safe_dump(spec))
    result = run_cli("calibrate", str(tmp_path / "model.yaml"))
    assert result.returncode == 0, result.stderr
    zero = [name for name, scale in read_cache(tmp_path / "out" / "model.cache").scales.items() if scale == 0]
    assert "x" in zero  # TensorRT writes such scales as 0 too; the point is that the user hears of it
    assert f"{len(zero)} of " in result.stderr and "were zero on every calibration image" in result.stderr


def overflowing() -> onnx.ModelProto:
    """y = Conv(x * 3e38): infinite wherever the input is not tiny."""
    weights = numpy_helper.from_array(np.ones((2, 3, 1, 1), np.float32), "w")
    huge = numpy_helper.from_array(np.array(3e38, np.float32), "k")
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["x", "k"], ["m"], "mul"),
            helper.make_node("Conv", ["m", "w"], ["y"], "conv"),
        ],
        "huge",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])],
        [weights, huge],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_non_finite_fp32_outputs_are_named_by_compare_and_sensitivity() -> None:
    message = r"FP32 output 'y' has NaN or infinite values on 1 of 2 samples"
    reference = {"y": np.stack([np.full((2, 4, 4), np.inf, np.float32), np.zeros((2, 4, 4), np.float32)])}
    with pytest.raises(TrtqError, match=message):
        compare_models(reference, reference)
    batches = [np.full((1, 3, 4, 4), value, np.float32) for value in (0.5, 1e-40)]  # inf, then finite
    with pytest.raises(TrtqError, match=message):
        analyse_sensitivity(overflowing(), {"x": 0.01, "m": 1e36}, "x", batches, 2)


def test_exclude_patterns_that_match_no_node_are_reported() -> None:
    model = overflowing()
    result = export_qdq(model, dict.fromkeys(activation_tensors(model), 0.01), ["conv", "Conv@3", "mu*"])
    assert result.unmatched_exclude == ["Conv@3"]
    assert result.summary()["unmatched_exclude"] == ["Conv@3"]


def test_options_compare_would_ignore_or_cannot_use_are_refused(tmp_path: Path) -> None:
    from tiny_project import tiny_project
    from typer.testing import CliRunner

    from trtq.cli.main import app

    config = tiny_project(tmp_path, "tiny.yaml", "m.onnx", "hidden", "y")
    runner = CliRunner()
    assert runner.invoke(app, ["calibrate", str(config)]).exit_code == 0
    (tmp_path / "labels.txt").write_text("0\n1\n")
    images = str(tmp_path / "images.txt")
    cache = str(tmp_path / "out" / "m.onnx.cache")
    # --algorithms calibrates anew: a --cache beside it would be silently ignored.
    result = runner.invoke(
        app, ["compare", str(config), "--images", images, "--algorithms", "all", "--cache", cache]
    )
    assert result.exit_code == 1 and "--cache and --algorithms" in result.output
    # The tiny model's output is [1, 4, 8, 8]: no class axis to score labels against.
    result = runner.invoke(
        app, ["compare", str(config), "--images", images, "--labels", str(tmp_path / "labels.txt")]
    )
    assert result.exit_code == 1 and "no output of m.onnx has a class axis" in result.output
