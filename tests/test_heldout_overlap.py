"""Scoring INT8 on its own calibration images flatters it: compare says so."""

from __future__ import annotations

from pathlib import Path

from conftest import listed_photos
from typer.testing import CliRunner

from trtq.cli.main import app


def test_compare_warns_when_heldout_images_are_calibration_images(
    calibrated_on_two: Path, tmp_path: Path
) -> None:
    config = calibrated_on_two
    runner = CliRunner()
    same = runner.invoke(app, ["compare", str(config), "--images", str(config.parent / "images.txt")])
    assert same.exit_code == 0, same.output
    assert "2 held-out image(s) are also calibration images" in " ".join(same.output.split())
    other = tmp_path / "other.txt"
    other.write_text("\n".join(listed_photos(2, start=10)) + "\n")
    fresh = runner.invoke(app, ["compare", str(config), "--images", str(other)])
    assert fresh.exit_code == 0 and "also calibration images" not in fresh.output
