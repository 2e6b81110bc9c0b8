"""``trtq cache inspect``: plain rows streamed in file order, or the top rows of a sort, and a summary."""

from __future__ import annotations

import math
from pathlib import Path

from typer.testing import CliRunner

from trtq.cache.trt_format import write_cache
from trtq.cli.main import app

SCALES = {"conv1": 0.5, "relu1": 2.0, "pool": 0.25, "folded": 0.0, "log": math.inf, "add": 1.0}


def _rows(output: str) -> list[tuple[str, str, str]]:
    """(scale, amax, tensor) of each table row."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split() == ["scale", "amax", "tensor"]) + 1
    end = next(i for i, line in enumerate(lines) if "tensors" in line and i >= start)
    return [(line.split()[0], line.split()[1], line.split()[2]) for line in lines[start:end]]


def test_rows_in_file_name_and_scale_order(tmp_path: Path) -> None:
    cache = tmp_path / "model.cache"
    write_cache(cache, SCALES, trt_version="8.6.1")
    runner = CliRunner()

    result = runner.invoke(app, ["cache", "inspect", str(cache)])
    assert result.exit_code == 0, result.output
    assert f"{cache}: TensorRT 8.6.1 (8601), EntropyCalibration2" in result.output
    assert [r[2] for r in _rows(result.output)] == list(SCALES)
    assert ("0.5", "63.5", "conv1") in _rows(result.output)  # amax = scale * 127
    assert "6 tensors\n" in result.output and "1 zero and 1 infinite scales" in result.output

    by_name = runner.invoke(app, ["cache", "inspect", str(cache), "--sort", "name"])
    assert [r[2] for r in _rows(by_name.output)] == ["add", "conv1", "folded", "log", "pool", "relu1"]

    top = runner.invoke(app, ["cache", "inspect", str(cache), "--sort", "scale", "--top", "3"])
    assert [r[2] for r in _rows(top.output)] == ["log", "relu1", "add"]
    assert "6 tensors, 3 shown (scale order)" in top.output
