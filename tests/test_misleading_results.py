"""Results that would mislead are refused or said (an adversarial user's findings, each as a class):
a task kind on an output of another shape, a cache made for another model with the same tensor
names, a cache cross-checked against the wrong algorithm, a proposal that makes things worse, two
all-zero outputs reported as disagreeing, nan durations, and caches retargeted where no build reads
them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import WriteConfig
from tiny_project import tiny_model, tiny_project
from typer.testing import CliRunner

from trtq.cli.main import app
from trtq.compare.sensitivity import SensitivityResult
from trtq.compare.tasks import output_cosine, shape_problem

runner = CliRunner()


@pytest.mark.parametrize(
    ("shape", "fits"),
    [((1, 84, 2100), True), ((1, 6, 8400), True), ((1, 7600, 10), False), ((1, 84), False)],
)
def test_yolo_needs_a_head_of_fewer_rows_than_anchors(shape: tuple[int, ...], fits: bool) -> None:
    # PicoDet's score tensor [1, 7600, 10] scored a perfect 1 (no detection on either side).
    assert (shape_problem("yolo", shape) is None) == fits


def test_two_all_zero_outputs_agree() -> None:
    zero = {"y": np.zeros((2, 3), np.float32)}
    assert output_cosine(zero, zero) == 1.0
    assert output_cosine(zero, {"y": np.ones((2, 3), np.float32)}) == 0.0


def test_a_cache_made_for_another_model_with_the_same_names_is_refused(tmp_path: Path) -> None:
    config = tiny_project(tmp_path / "a", "a.yaml", "m.onnx", "hidden", "y")
    assert runner.invoke(app, ["calibrate", str(config)]).exit_code == 0
    other = tiny_project(tmp_path / "b", "b.yaml", "m.onnx", "hidden", "y")
    model = onnx_with_other_weights(other.parent / "m.onnx")
    assert model.read_bytes() != (tmp_path / "a" / "m.onnx").read_bytes()
    for name in ("m.onnx.cache", "m.onnx.cache.manifest.json", "m.onnx.cache.report.json"):
        shutil.copy(tmp_path / "a" / "out" / name, tmp_path / name)
    given = str(tmp_path / "m.onnx.cache")
    for args in (
        ["qdq", str(other), "--cache", given, "-o", str(tmp_path / "q.onnx")],
        ["compare", str(other), "--images", str(other.parent / "images.txt"), "--cache", given],
        ["crosscheck", str(other), "--cache", given],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 1, (args, result.output)
        assert "its manifest says it was made for another model" in result.output, args


def onnx_with_other_weights(path: Path) -> Path:
    """The tiny model again, its names unchanged, its weights from another seed."""
    import onnx
    from onnx import numpy_helper

    tiny_model(path, "hidden", "y")
    model = onnx.load(str(path))
    weight = model.graph.initializer[0]
    values = numpy_helper.to_array(weight) * 2.0
    weight.CopyFrom(numpy_helper.from_array(values.astype(np.float32), weight.name))
    onnx.save(model, str(path))
    return path


def test_crosscheck_compares_a_cache_with_the_algorithm_that_made_it(write_config: WriteConfig) -> None:
    # A percentile cache carries the EntropyCalibration2 header: the manifest says what made it.
    config = write_config(n_images=4, algorithm="percentile", holdout=0.0)
    assert runner.invoke(app, ["calibrate", str(config)]).exit_code == 0
    cache = config.parent / "out" / "model.cache"
    out = config.parent / "x.json"
    result = runner.invoke(app, ["crosscheck", str(config), "--cache", str(cache), "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["algorithm"] == "percentile"
    assert report["summary"]["within_1_percent"] == 1.0


def test_a_proposal_that_scores_below_full_int8_is_not_proposed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tiny_project(tmp_path, "t.yaml", "m.onnx", "hidden", "y")
    assert runner.invoke(app, ["calibrate", str(config)]).exit_code == 0
    worse = SensitivityResult(0.97, 0.99, [], ["conv"], 0.95)
    monkeypatch.setattr("trtq.cli.sensitivity.analyse_sensitivity", lambda *_args, **_kw: worse)
    result = runner.invoke(app, ["sensitivity", str(config), "--images", str(tmp_path / "images.txt")])
    assert result.exit_code == 0, result.output
    assert "scores below full INT8 (0.9500 < 0.9700)" in result.output
    assert "proposal (add to" not in result.output


def test_a_nan_duration_is_named_not_a_range(tmp_path: Path) -> None:
    config = tiny_project(tmp_path, "t.yaml", "m.onnx", "hidden", "y")
    for value, message in (("nan", "nan is not a finite number"), ("0", "0.0 is not in (0, 86400]")):
        result = runner.invoke(app, ["bench", str(config), "--backend", "onnxruntime", "--duration-s", value])
        assert result.exit_code == 2 and message in result.output, result.output


def test_retargeting_to_tensorrt_11_says_no_build_reads_the_cache(tmp_path: Path) -> None:
    config = tiny_project(tmp_path, "t.yaml", "m.onnx", "hidden", "y")
    assert runner.invoke(app, ["calibrate", str(config)]).exit_code == 0
    cache = tmp_path / "out" / "m.onnx.cache"
    result = runner.invoke(app, ["cache", "retarget", str(cache), "--trt-version", "11.1.0"])
    assert result.exit_code == 0, result.output
    assert "TensorRT 11.1.0 has no INT8 calibrators" in result.output
