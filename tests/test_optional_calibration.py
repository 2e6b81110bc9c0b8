"""calibration.images and calibration.cache are required by the commands that read them, not by the
schema: `trtq qdq CONFIG --cache C` works from a config with neither (or no calibration section)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import TEXT_CLASSIFIER, listed_photos
from typer.testing import CliRunner

from trtq.cache.trt_format import write_cache
from trtq.cli.main import app
from trtq.config import load_config
from trtq.model.files import load_onnx
from trtq.model.index import activation_tensors

HEAD = f"""\
model:
  path: '{TEXT_CLASSIFIER}'
inputs:
  - name: x
    shape: [2, 3, 48, 192]
"""
CALIBRATION = {
    "no calibration section": "",
    "a section without images or cache": "calibration:\n  algorithm: minmax\n",
    "a section without images": "calibration:\n  cache: model.cache\n",
}


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


@pytest.fixture
def given_cache(tmp_path: Path) -> Path:
    """A cache of the classifier's activations, given with --cache (and its manifest-less set)."""
    config = tmp_path / "model.yaml"
    config.write_text(HEAD)
    names = activation_tensors(load_onnx(load_config(config).model_path))
    path = tmp_path / "given.cache"
    write_cache(path, dict.fromkeys(names, 0.01))
    (tmp_path / "held.txt").write_text("\n".join(listed_photos(2, start=10)) + "\n")
    return path


@pytest.mark.parametrize("section", CALIBRATION)
def test_commands_that_read_only_the_given_cache_need_no_calibration_keys(
    tmp_path: Path, given_cache: Path, section: str
) -> None:
    config = tmp_path / "model.yaml"
    config.write_text(HEAD + CALIBRATION[section])
    out = tmp_path / "model.qdq.onnx"
    code, output = invoke("qdq", str(config), "--cache", str(given_cache), "-o", str(out))
    assert code == 0, output
    assert out.is_file()
    held = str(tmp_path / "held.txt")
    code, output = invoke("compare", str(config), "--cache", str(given_cache), "--images", held)
    assert code == 0, output


COMMANDS_READING_IMAGES = {
    "calibrate": ["calibrate", "{config}"],
    "crosscheck": ["crosscheck", "{config}", "--cache", "{cache}"],
    "compare --algorithms": ["compare", "{config}", "--algorithms", "minmax", "--images", "{held}"],
    "report": ["report", "{config}"],
    "bench on ONNX Runtime": ["bench", "{config}", "--backend", "onnxruntime"],
}


@pytest.mark.parametrize("section", CALIBRATION)
@pytest.mark.parametrize("command", COMMANDS_READING_IMAGES)
def test_commands_that_read_images_name_the_missing_key(
    tmp_path: Path, given_cache: Path, command: str, section: str
) -> None:
    config = tmp_path / "model.yaml"
    config.write_text(HEAD + CALIBRATION[section])
    paths = {
        "config": config,
        "cache": given_cache,
        "held": tmp_path / "held.txt",
        "out": tmp_path / "t.onnx",
    }
    code, output = invoke(*[arg.format(**paths) for arg in COMMANDS_READING_IMAGES[command]])
    assert code == 1, output
    line = 6 if section != "no calibration section" else 1  # the section's line, else the file's first
    expected = f"error: {config}:{line}: calibration.images: required key is missing (this command reads "
    assert output.count("error:") == 1 and expected in output, output


def test_qdq_without_cache_names_the_missing_key(tmp_path: Path) -> None:
    config = tmp_path / "model.yaml"
    config.write_text(HEAD + CALIBRATION["a section without images or cache"])
    code, output = invoke("qdq", str(config), "-o", str(tmp_path / "m.qdq.onnx"))
    assert code == 1
    assert f"error: {config}:6: calibration.cache: required key is missing" in output
    assert "take --cache" in output


def test_qdq_says_a_given_cache_with_a_manifest_cannot_be_checked_without_images(
    calibrated_on_two: Path,
) -> None:
    cache = load_config(calibrated_on_two).cache_path
    config = calibrated_on_two.parent / "bare.yaml"
    config.write_text(HEAD)
    code, output = invoke("qdq", str(config), "--cache", str(cache), "-o", str(config.parent / "m.qdq.onnx"))
    assert code == 0, output
    assert (
        f"warning {cache} has a manifest, but {config} has no calibration.images to check it against"
        in output
    )
