"""Without an output path, every command writes beside the config, in its out/ folder, as
out/CONFIG_NAME.COMMAND.json (.html for report), wherever it runs: one rule, crosscheck included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_commands import commands
from tiny_project import tiny_project
from typer.testing import CliRunner

from trtq.cli.main import app

RUNS = {
    "compare": ["--images", "images.txt"],
    "sensitivity": ["--images", "images.txt"],
    "crosscheck": ["--cache", "out/m.onnx.cache"],
    "report": [],
    "bench": ["--backend", "onnxruntime", "--duration-s", "0.05"],
}
"""Every command whose output option is optional, with the other options it needs."""


def test_every_command_with_a_default_output_is_run() -> None:
    defaulted = {
        command for command, parameters in commands() if any(p.is_output and p.optional for p in parameters)
    }
    # retarget's default is CACHE itself, in place; doctor takes no config and writes JSON only when asked
    assert defaulted - {"cache retarget", "doctor"} == set(RUNS)


@pytest.mark.parametrize("command", list(RUNS))
def test_the_default_output_is_beside_the_config(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    config = tiny_project(project, "tiny.yaml", "m.onnx", "hidden", "y")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(project)
    runner = CliRunner()
    assert runner.invoke(app, ["calibrate", "tiny.yaml"]).exit_code == 0
    monkeypatch.chdir(elsewhere)
    args = [str(project / a) if (project / a).exists() else a for a in RUNS[command]]
    result = runner.invoke(app, [command, str(config), *args])
    assert result.exit_code == 0, result.output
    suffix = "html" if command == "report" else "json"
    written = project / "out" / f"tiny.{command}.{suffix}"
    assert written.is_file(), sorted(p.name for p in (project / "out").iterdir())
    if suffix == "json":
        json.loads(written.read_text())
    assert not any(elsewhere.iterdir())
