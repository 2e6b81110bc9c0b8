"""Without an output path, commands write beside the config (its out/ folder), wherever they run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import WriteConfig, listed_photos
from typer.testing import CliRunner

from trtq.cli.main import app


def test_compare_writes_its_json_beside_the_config(
    write_config: WriteConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(n_images=2)
    held_out = tmp_path / "held_out.txt"
    held_out.write_text("\n".join(listed_photos(2, start=10)) + "\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    runner = CliRunner()
    assert runner.invoke(app, ["calibrate", str(config)]).exit_code == 0
    result = runner.invoke(app, ["compare", str(config), "--images", str(held_out)])
    assert result.exit_code == 0, result.output
    written = config.parent / "out" / f"{config.stem}.compare.json"
    assert json.loads(written.read_text())["samples"] == 2
    assert not any(elsewhere.iterdir())
