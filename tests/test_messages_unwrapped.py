"""Messages are never hard-wrapped: in a log (no terminal) rich would break them at the console width,
splitting a path or a tensor name a reader then greps for in vain. Tables may wrap their cells."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import WriteConfig, listed_photos
from typer.testing import CliRunner

from trtq.cache.trt_format import read_cache, write_cache
from trtq.cli.main import app
from trtq.config import load_config

LONG_NAME = "/backbone/stage4/block_with_a_rather_long_name/depthwise_separable_convolution/Conv_output_0"
"""A tensor only the cache has: qdq and crosscheck name it in a message."""


def invoke(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code in (0, 1), result.output
    return result.output


def unbroken(text: str, output: str) -> bool:
    return any(text in line for line in output.splitlines())


@pytest.fixture
def long_paths(tmp_path: Path, write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A calibrated config in a directory whose path alone is longer than the console, 40 columns
    wide as a log's would be 80: narrow enough that every message below would be split."""
    monkeypatch.setenv("COLUMNS", "40")
    deep = tmp_path / ("a_directory_name_long_enough_to_overflow_a_log_line_" * 2)
    deep.mkdir()
    monkeypatch.chdir(deep)
    config = write_config(n_images=2)
    moved = deep / config.name
    moved.write_text(config.read_text())
    (deep / "images.txt").write_text((tmp_path / "images.txt").read_text())
    return moved


def test_every_command_prints_paths_and_tensor_names_unbroken(long_paths: Path) -> None:
    config = long_paths
    cache = load_config(config).cache_path
    output = invoke("calibrate", str(config))
    assert unbroken(str(cache), output), output

    messages = {
        "cache inspect": (invoke("cache", "inspect", str(cache)), f"manifest: {cache}.manifest.json"),
        "cache check": (invoke("cache", "check", str(config), "--cache", str(cache)), f"{cache} matches"),
    }
    retargeted = config.parent / "retargeted.cache"
    output = invoke("cache", "retarget", str(cache), "--trt-version", "10.13.3", "-o", str(retargeted))
    messages["cache retarget"] = (
        output,
        f"{retargeted}: header TensorRT 10.16.1 -> 10.13.3, scales unchanged",
    )

    extra = config.parent / "extra.cache"
    write_cache(extra, {**read_cache(cache).scales, LONG_NAME: 0.5})
    qdq = config.parent / "model.qdq.onnx"
    messages["qdq"] = (invoke("qdq", str(config), "--cache", str(extra), "-o", str(qdq)), LONG_NAME)
    messages["qdq output"] = (messages["qdq"][0], f"{qdq}: ")
    messages["crosscheck"] = (invoke("crosscheck", str(config), "--cache", str(extra)), LONG_NAME)
    held = config.parent / "held.txt"
    held.write_text("\n".join(listed_photos(2, start=10)) + "\n")
    compared = config.parent / "compared.json"
    output = invoke(
        "compare", str(config), "--cache", str(extra), "--images", str(held), "--json", str(compared)
    )
    messages["compare"] = (output, f"json     {compared}")
    timed = config.parent / "timed.json"
    output = invoke(
        "bench",
        str(config),
        "--backend",
        "onnxruntime",
        "--duration-s",
        "0.1",
        "--warmup-ms",
        "0",
        "--json",
        str(timed),
    )
    messages["bench"] = (output, f"json     {timed}")
    missing = config.parent / "missing.cache"
    messages["an error"] = (
        invoke("cache", "inspect", str(missing)),
        f"{missing}: calibration cache not found",
    )
    for command, (output, expected) in messages.items():
        assert unbroken(expected, output), f"{command}: {expected!r} is split in\n{output}"
