"""Every command publishes its outputs in one step (one atomic file, or one file set), so that
"interrupted: no output was half-written" is true: Ctrl-C at the second rename into the output
folder leaves every output old, or every output new, never a mix (tune's new Q/DQ model beside the
old run's tune.json, say)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cli_commands import commands
from tiny_project import tiny_project
from typer.testing import CliRunner

from trtq.cli.main import app

OLD = b"the previous run's file\n"
RES = "res"
"""Every output goes here; renames into it are the ones interrupted."""

WRITES: dict[str, tuple[list[str], list[str]]] = {
    "calibrate": (["calibrate", "cfg.yaml"], ["m.cache", "m.cache.manifest.json", "m.cache.report.json"]),
    "qdq": (["qdq", "cfg.yaml", "-o", "res/q.onnx"], ["q.onnx", "q.onnx.json"]),
    "compare": (["compare", "cfg.yaml", "--images", "images.txt", "--json", "res/c.json"], ["c.json"]),
    "sensitivity": (
        ["sensitivity", "cfg.yaml", "--images", "images.txt", "--json", "res/s.json"],
        ["s.json"],
    ),
    "crosscheck": (["crosscheck", "cfg.yaml", "--cache", "res0/m.cache", "--json", "res/x.json"], ["x.json"]),
    "report": (["report", "cfg.yaml", "-o", "res/r.html"], ["r.html"]),
    "bench": (
        ["bench", "cfg.yaml", "--backend", "onnxruntime", "--duration-s", "0.05", "--json", "res/b.json"],
        ["b.json"],
    ),
    "tune": (
        ["tune", "cfg.yaml", "--tune-images", "images.txt", "-o", "res/t.qdq.onnx"],
        ["t.qdq.onnx", "t.fp32.onnx", "t.cache", "t.cache.manifest.json", "t.yaml", "t.tune.json"],
    ),
    "doctor": (["doctor", "--workdir", "res0/doctor", "--json", "res/d.json"], ["d.json"]),
    "cache retarget": (
        ["cache", "retarget", "res0/m.cache", "--trt-version", "10.9.0", "-o", "res/r.cache"],
        ["r.cache", "r.cache.manifest.json", "r.cache.report.json"],
    ),
}
UNTESTED = {
    "build": "needs TensorRT and a GPU",
    "cache inspect": "writes nothing",
    "cache check": "writes nothing",
}


def test_every_writing_command_is_interrupted() -> None:
    assert {name for name, _ in commands()} == set(WRITES) | set(UNTESTED)


@pytest.mark.parametrize("command", list(WRITES))
def test_an_interrupted_command_leaves_all_old_or_all_new(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tiny_project(tmp_path, "cfg.yaml", "m.onnx", "hidden", "y")
    runner = CliRunner()
    # the config's cache in res/ for calibrate; a calibrated set in res0/ for the commands that read one
    text = config.read_text().replace("out/m.onnx.cache", f"{RES}0/m.cache")
    config.write_text(text)
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(app, ["calibrate", "cfg.yaml"]).exit_code == 0
    if command == "calibrate":
        config.write_text(text.replace(f"{RES}0/m.cache", f"{RES}/m.cache"))
    args, outputs = WRITES[command]
    (tmp_path / RES).mkdir()
    for name in outputs:
        (tmp_path / RES / name).write_bytes(OLD)

    real_replace = os.replace
    renames: list[str] = []

    def interrupted_replace(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
        if Path(target).parent.name == RES:
            renames.append(Path(target).name)
            if len(renames) == 2:
                raise KeyboardInterrupt
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", interrupted_replace)
    result = runner.invoke(app, args)
    assert result.exit_code in (0, 130), result.output
    if result.exit_code == 130:
        assert "interrupted: no output was half-written" in result.output
    old = [name for name in outputs if (tmp_path / RES / name).read_bytes() == OLD]
    assert old in ([], outputs), f"{old} still old after renames {renames}"
    for name in outputs if not old else []:
        if name.endswith(".json"):  # one JSON writer: standard JSON, null for a non-finite number
            json.loads((tmp_path / RES / name).read_text(), parse_constant=_not_standard)


def _not_standard(name: str) -> None:
    raise AssertionError(f"non-standard JSON constant {name}")
