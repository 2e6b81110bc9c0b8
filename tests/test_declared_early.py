"""A declared output that is not the model's is refused at its YAML key before any image is run, by
every command that judges outputs (sensitivity once ignored it and ranked by cosine). The image lists
here name a corrupt image: a command that ran any image first would fail on it instead."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from conftest import classifier_config, listed_photos
from typer.testing import CliRunner

from trtq.cli.main import app

COMMANDS = {
    "calibrate": ["calibrate", "{config}"],
    "compare": ["compare", "{config}", "--images", "{images}", "--algorithms", "minmax"],
    "sensitivity": ["sensitivity", "{config}", "--images", "{images}", "--cache", "{cache}"],
    "tune": [
        "tune",
        "{config}",
        "--tune-images",
        "{images}",
        "--images",
        "{images}",
        "-o",
        "{out}/t.qdq.onnx",
    ],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_an_output_typo_is_named_before_any_image_is_read(command: str, tmp_path: Path) -> None:
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    (tmp_path / "images.txt").write_text("broken.png\n" + "\n".join(listed_photos(3)) + "\n")
    (tmp_path / "broken_held.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image either")
    (tmp_path / "held.txt").write_text("broken_held.png\n" + "\n".join(listed_photos(3, start=3)) + "\n")
    (tmp_path / "model.cache").write_text("TRT-8601-EntropyCalibration2\nx: 3c010204\n")
    spec = classifier_config("images.txt", "model.cache", on_bad_image="error")
    spec["outputs"] = {"logitz": {"kind": "classes"}}
    (tmp_path / "model.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    fields = {
        "config": str(tmp_path / "model.yaml"),
        "images": str(tmp_path / "images.txt"),
        "held": str(tmp_path / "held.txt"),
        "cache": str(tmp_path / "model.cache"),
        "out": str(tmp_path / "out"),
    }
    result = CliRunner().invoke(app, [arg.format(**fields) for arg in COMMANDS[command]])
    assert result.exit_code == 1, result.output
    expected = r"model.yaml:\d+: outputs.logitz: 'logitz' is not an output of"
    errors = [line for line in result.output.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and re.search(expected, errors[0]), result.output  # no image error first
