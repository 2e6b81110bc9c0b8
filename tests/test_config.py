"""Config validation: every bad input is one error naming file, line and key, with a fix hint."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from trtq.config import TrtqConfig, load_config
from trtq.errors import TrtqError

REPO = Path(__file__).resolve().parent.parent

GOOD = """\
model:
  path: model.onnx
inputs:
  - name: x
    shape: [1, 3, 224, 224]
preprocess:
  color: rgb
  mean: [0.485, 0.456, 0.406]
  std: [0.229, 0.224, 0.225]
calibration:
  images: images.txt
  cache: out/model.cache
"""


def load_text(tmp_path: Path, text: str) -> object:
    path = tmp_path / "model.yaml"
    path.write_text(text)
    return load_config(path)


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(TrtqError) as info:
        load_text(tmp_path, text)
    return str(info.value)


def test_demo_config_is_valid_and_paths_are_relative_to_it() -> None:
    config = load_config(REPO / "configs" / "demo.yaml")
    assert config.calibration_shape == (1, 3, 640, 640)
    assert config.image_size == (640, 640)
    assert config.batch_size == 1
    assert config.images_path == REPO / "calibrators" / "skimage_photos.txt"
    assert config.cache_path == REPO / "out" / "demo" / "ppocrv4_det.cache"
    assert config.model_path.name == "ch_PP-OCRv4_det_infer.onnx" and config.model_path.is_file()


def test_defaults(tmp_path: Path) -> None:
    config = load_text(tmp_path, GOOD)
    calibration = config.spec.calibration  # type: ignore[attr-defined]
    assert (calibration.algorithm, calibration.last_batch, calibration.on_bad_image) == (
        "entropy",
        "drop",
        "error",
    )
    assert calibration.trt_version == "10.16.1"
    assert config.spec.benchmark.warmup_ms == 200  # type: ignore[attr-defined]
    assert config.cache_path == tmp_path / "out" / "model.cache"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("replace", "by", "expected"),
    [
        (
            "  color: rgb",
            "  colour: rgb",
            r"model.yaml:7: preprocess.colour: unknown key \(did you mean 'color'\?\)",
        ),
        (
            "  color: rgb",
            "  color: rgb\n  short_side: 256",
            r"model.yaml:6: preprocess: short_side only applies to resize: short_side_crop "
            r"\(resize is stretch\)",
        ),
        (
            "  color: rgb",
            "  color: rgb\n  scale: 1.0e+39",
            r"model.yaml:8: preprocess.scale: 1e\+39: outside float32's range",
        ),
        (
            "  std: [0.229, 0.224, 0.225]",
            "  std: [1.0e-46, 0.224, 0.225]",
            r"model.yaml:9: preprocess.std: .*1e-46 is too small for float32",
        ),
        (
            "  color: rgb",
            "  color: rgb\n  resize: letterbox\n  pad_value: 114\n  pad_normalized: 0",
            r"model.yaml:6: preprocess: give pad_value \(pixel units 0-255, before scale/mean/std\) or "
            r"pad_normalized \(after them\), not both",
        ),
        (
            "  color: rgb",
            "  color: rgb\n  pad_normalized: 0",
            r"model.yaml:6: preprocess: pad_normalized only applies to resize: letterbox or fixed_height "
            r"\(resize is stretch\)",
        ),
        (
            "  color: rgb",
            "  color: rgb\n  resize: fixed_height",
            r"model.yaml:6: preprocess: resize: fixed_height needs its border: pad_value \(pixel units "
            r"0-255\) or pad_normalized \(after scale/mean/std; PP-OCR recognizers pad with "
            r"pad_normalized: 0\)",
        ),
        (
            "  color: rgb",
            "  color: rgb\n  resize: fixed_height\n  pad_normalized: 1.0e+39",
            r"model.yaml:9: preprocess.pad_normalized: 1e\+39: outside float32's range",
        ),
        (
            "  color: rgb",
            "  color: rgb\n  resize: letterbox\n  pad_value: 256",
            r"model.yaml:9: preprocess.pad_value: 256: Input should be less than or equal to 255",
        ),
        (
            "calibration:",
            "calibraton:",
            r"model.yaml:10: calibraton: unknown key \(did you mean 'calibration'\?\)",
        ),
        (
            "  cache: out/model.cache",
            "  cache: out/model.cache\n  algorithm: kl",
            r"model.yaml:13: calibration.algorithm: 'kl': "
            r"Input should be 'entropy', 'minmax', 'percentile', 'mse' or 'auto'",
        ),
        (
            "  cache: out/model.cache",
            "  cache: out/model.cache\n  zzz: 1",
            r"model.yaml:13: calibration.zzz: unknown key \(valid keys: images, cache, batch_size",
        ),
        (
            "  images: images.txt\n",
            "  images: ''\n",
            r"model.yaml:11: calibration.images: '': String should have",
        ),
        (
            "  cache: out/model.cache",
            "  cache: out/model.cache\n  batch_size: 0",
            r"model.yaml:13: calibration.batch_size: 0: Input should be greater than 0",
        ),
        (
            "  cache: out/model.cache",
            "  cache: out/model.cache\n  batch_size: 8",
            r"model.yaml:13: calibration.batch_size: 8: the input takes its fixed batch dim 1 "
            r"\(inputs.0.shape\)",
        ),
        (
            "    shape: [1, 3, 224, 224]",
            "    min: [1, 3, 224, 224]\n    opt: [1, 3, 200, 224]\n    max: [1, 3, 224, 224]",
            r"model.yaml:4: inputs.0: need min <= opt <= max in every dimension",
        ),
        (
            "    shape: [1, 3, 224, 224]",
            "    shape: [1, 3, 224, 224]\n    opt: [1, 3, 224, 224]",
            r"model.yaml:4: inputs.0: give either 'shape' or 'min'/'opt'/'max', not both",
        ),
        (
            "    shape: [1, 3, 224, 224]",
            "    shape: [1, 1, 224, 224]",
            r"model.yaml:5: inputs.0.shape: 1 channels in nchw layout, but preprocess.color 'rgb' gives 3",
        ),
        (
            "  mean: [0.485, 0.456, 0.406]",
            "  mean: [0.485, 0.456]",
            r"model.yaml:8: preprocess.mean: needs 1 or 3 values, got 2",
        ),
        (
            "  std: [0.229, 0.224, 0.225]",
            "  std: [0.229, 0, 0.225]",
            r"model.yaml:9: preprocess.std: .*non-zero",
        ),
        (
            "  color: rgb",
            "  color: rgb\n  layout: NCHW",
            r"model.yaml:8: preprocess.layout: 'NCHW': Input should be 'nchw' or 'nhwc'",
        ),
        (
            "  cache: out/model.cache",
            "  cache: out/model.cache\n  trt_version: ten",
            r"model.yaml:13: calibration.trt_version: 'ten': 'ten' is not a TensorRT version like 10.16.1",
        ),
        (
            "  cache: out/model.cache",
            "  cache: out/model.cache\n  trt_version: '10.200.1'",
            r"model.yaml:13: calibration.trt_version: .*minor and patch must be 0..99",
        ),
        (
            "  cache: out/model.cache",
            "  cache: out/model.cache\nbuild:\n  precision: int4",
            r"model.yaml:14: build.precision: 'int4': Input should be",
        ),
    ],
)
def test_bad_config_names_file_line_and_key(tmp_path: Path, replace: str, by: str, expected: str) -> None:
    assert replace in GOOD
    message = error_of(tmp_path, GOOD.replace(replace, by, 1))
    assert re.search(expected, message), message
    assert "Traceback" not in message and "pydantic" not in message


def test_every_error_is_reported_at_once(tmp_path: Path) -> None:
    text = GOOD.replace("  color: rgb", "  colour: rgb").replace(
        "calibration:", "calibration:\n  algorithm: kl"
    )
    message = error_of(tmp_path, text)
    assert "preprocess.colour" in message and "calibration.algorithm" in message
    assert len(message.splitlines()) == 2


@pytest.mark.parametrize(
    ("replace", "by", "expected"),
    [
        (
            "calibration:",
            "preprocess:\n  color: bgr\ncalibration:",
            "model.yaml:10: key 'preprocess' appears twice (first at line 6)",
        ),
        (
            "  cache: out/model.cache",
            "  cache: out/model.cache\n  images: more.txt",
            "model.yaml:13: key 'images' appears twice (first at line 11)",
        ),
    ],
)
def test_a_key_given_twice_is_an_error(tmp_path: Path, replace: str, by: str, expected: str) -> None:
    """YAML itself keeps the last value silently; the first one would be lost without a word."""
    assert (
        error_of(tmp_path, GOOD.replace(replace, by, 1))
        == f"{tmp_path / 'model.yaml'}:{expected.split(':', 1)[1]}"
    )


def test_exponent_without_a_dot_is_a_number(tmp_path: Path) -> None:
    """PyYAML (YAML 1.1) reads 4e-3 as a string; YAML 1.2 and every user read it as 0.004."""
    loaded = load_text(tmp_path, GOOD.replace("  color: rgb", "  color: rgb\n  scale: 4e-3"))
    assert loaded.spec.preprocess.scale == 0.004  # type: ignore[attr-defined]
    assert "not a valid" not in error_of(
        tmp_path, GOOD.replace("  color: rgb", "  color: rgb\n  scale: .inf")
    )


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    message = error_of(tmp_path, GOOD.replace("  - name: x", "  - name: [x"))
    assert re.search(r"model.yaml:\d+: invalid YAML", message)


def test_not_a_mapping_and_missing_file(tmp_path: Path) -> None:
    assert "must be a YAML mapping" in error_of(tmp_path, "- just\n- a list\n")
    with pytest.raises(TrtqError, match=r"missing\.yaml: config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_unknown_package_path_is_a_clear_error(tmp_path: Path) -> None:
    config = load_text(tmp_path, GOOD.replace("path: model.onnx", "path: pkg:no_such_pkg_xyz/m.onnx"))
    with pytest.raises(TrtqError, match="Python package 'no_such_pkg_xyz' is not installed"):
        _ = config.model_path  # type: ignore[attr-defined]


def test_a_dumped_config_loads_again(tmp_path: Path) -> None:
    """tune writes its overlay config from model_dump(exclude_none=True): the padding rules are on
    values, so what one config dumps, the next load accepts."""
    import yaml

    for preprocess in ("resize: fixed_height\n  pad_normalized: 0", "resize: letterbox", "color: bgr"):
        config = load_text(tmp_path, GOOD.replace("  color: rgb", f"  {preprocess}"))
        dumped = config.spec.model_dump(mode="json", exclude_none=True)  # type: ignore[attr-defined]
        again = load_text(tmp_path, yaml.safe_dump(dumped))
        assert again.spec == config.spec  # type: ignore[attr-defined]


def test_outputs_section_declares_kinds_with_their_defaults(tmp_path: Path) -> None:
    text = GOOD + "outputs:\n  seq: {kind: ctc}\n  head: {kind: yolo, conf: 0.4}\n  prob: {kind: map}\n"
    outputs = load_text(tmp_path, text).spec.outputs  # type: ignore[attr-defined]
    assert (outputs["seq"].kind, outputs["seq"].blank) == ("ctc", 0)
    assert (outputs["head"].conf, outputs["head"].iou) == (0.4, 0.45)
    assert outputs["prob"].threshold == 0.3
    assert load_text(tmp_path, GOOD).spec.outputs == {}  # type: ignore[attr-defined]
    # a dumped config (trtq tune writes one) holds each kind's own keys and validates again
    dumped = load_text(tmp_path, text).spec.model_dump(mode="json")  # type: ignore[attr-defined]
    assert dumped["outputs"]["seq"] == {"kind": "ctc", "blank": 0}
    assert TrtqConfig.model_validate(dumped).outputs == outputs


@pytest.mark.parametrize(
    ("outputs", "expected"),
    [
        ("  seq: {kind: ctc, conf: 0.3}", r"model.yaml:14: outputs.seq: conf does not apply to kind ctc"),
        (
            "  head: {kind: yolo, confx: 0.3}",
            r"model.yaml:14: outputs.head.confx: unknown key \(did you mean 'conf'",
        ),
        ("  m: {kind: mask}", r"model.yaml:14: outputs.m.kind: 'mask': Input should be 'raw', 'ctc'"),
        (
            "  head: {kind: yolo, iou: 0}",
            r"model.yaml:14: outputs.head.iou: 0: Input should be greater than 0",
        ),
    ],
)
def test_bad_outputs_are_located_by_file_line_and_key(tmp_path: Path, outputs: str, expected: str) -> None:
    message = error_of(tmp_path, GOOD + "outputs:\n" + outputs + "\n")
    assert re.search(expected, message), message


def test_recognizer_config_is_valid() -> None:
    config = load_config(REPO / "configs" / "ppocr_rec.yaml")
    assert config.spec.calibration.algorithm == "auto"
    assert config.spec.outputs["softmax_11.tmp_0"].kind == "ctc"
    assert config.model_path.is_file() and config.image_size == (48, 320)
