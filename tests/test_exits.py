"""Ordinary mistakes and ordinary shell use never end in "internal error"."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import yaml
from conftest import REPO, WriteConfig, listed_photos
from typer.testing import CliRunner

from trtq.cli.main import app


def piped(arguments: str, reader: str) -> subprocess.CompletedProcess[str]:
    """`trtq ARGUMENTS | READER` in bash; stdout ends with trtq's exit status as status=N."""
    return subprocess.run(
        f"{sys.executable} -m trtq {arguments} | {reader}; echo status=${{PIPESTATUS[0]}}",
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )


def test_output_piped_into_head_ends_quietly(tmp_path: Path) -> None:
    cache = tmp_path / "big.cache"
    cache.write_text("TRT-101601-EntropyCalibration2\n" + "".join(f"t{i}: 3c010204\n" for i in range(20000)))
    pipe = piped(f"cache inspect {cache}", "head -1")
    assert "status=141" in pipe.stdout, pipe
    assert "internal error" not in pipe.stderr and "Traceback" not in pipe.stderr


@pytest.mark.parametrize("arguments", ["--help", "calibrate --help", "--version"])
def test_help_piped_into_a_reader_that_leaves_ends_quietly(arguments: str) -> None:
    # typer prints help through its own rich console, and click the version, which exited with 1 here.
    pipe = piped(arguments, "true")
    assert "status=141" in pipe.stdout, pipe
    assert pipe.stderr == "", pipe.stderr


@pytest.mark.parametrize("reader", ["head -1", "true"])
def test_calibrate_piped_into_a_reader_that_leaves_still_writes_its_outputs(
    write_config: WriteConfig, reader: str
) -> None:
    # calibrate's results are files: its progress text going nowhere must not cancel the job (rich
    # would exit with status 1 at the first print, `| true` before anything was calibrated).
    config = write_config(n_images=4)
    pipe = piped(f"calibrate {config}", reader)
    assert "status=0" in pipe.stdout, pipe
    assert all(line.startswith("warning ") for line in pipe.stderr.splitlines()), pipe.stderr  # doubling
    cache = config.parent / yaml.safe_load(config.read_text())["calibration"]["cache"]
    assert cache.read_text().startswith("TRT-")


def test_calibrate_whose_stderr_reader_leaves_still_writes_its_outputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # trtq's own warning (here: the kernels run as Python, on a 3x32x32 Relu model) goes to a stderr
    # nobody reads any more: the job carries on and writes its files, as with stdout.
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Relu", ["x"], ["y"])],
        "relu",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 32, 32])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3, 32, 32])],
    )
    onnx.save(onnx.helper.make_model(graph), str(tmp_path / "relu.onnx"))
    (tmp_path / "images.txt").write_text("\n".join(listed_photos(2)) + "\n")
    config = {
        "model": {"path": "relu.onnx"},
        "inputs": [{"name": "x", "shape": [1, 3, 32, 32]}],
        "preprocess": {"color": "bgr", "scale": 1 / 255},
        "calibration": {"images": "images.txt", "cache": "out/relu.cache"},
    }
    (tmp_path / "relu.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("NUMBA_DISABLE_JIT", "1")
    pipe = piped(f"calibrate {tmp_path / 'relu.yaml'} 2>&1 >/dev/null", "true")
    assert "status=0" in pipe.stdout, pipe
    assert (tmp_path / "out" / "relu.cache").read_text().startswith("TRT-")
    read = piped(f"calibrate {tmp_path / 'relu.yaml'} 2>&1 >/dev/null", "cat")  # the warning it wrote
    assert "NUMBA_DISABLE_JIT is set" in read.stdout and "status=0" in read.stdout, read


def test_empty_or_too_long_cache_names_are_user_errors(write_config: WriteConfig) -> None:
    config = write_config(n_images=2)
    runner = CliRunner()
    for name in ("", "out/" + "a" * 300 + ".cache"):
        data = yaml.safe_load(config.read_text())
        data["calibration"]["cache"] = name
        config.write_text(yaml.safe_dump(data))
        result = runner.invoke(app, ["calibrate", str(config)])
        assert result.exit_code == 1, result.output
        assert "internal error" not in result.output and "calibration.cache" in result.output


def test_a_cache_name_near_the_file_system_limit_still_gets_its_files(write_config: WriteConfig) -> None:
    # 241 bytes: its manifest's name is 255, the limit; the hidden temporary files, journal and lock
    # would pass it if they added their suffixes to the full name.
    config = write_config(n_images=2)
    name = "a" * 235 + ".cache"
    data = yaml.safe_load(config.read_text())
    data["calibration"]["cache"] = f"out/{name}"
    config.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(app, ["calibrate", str(config)])
    assert result.exit_code == 0, result.output
    written = sorted(path.name for path in (config.parent / "out").iterdir())
    assert written == [name, f"{name}.manifest.json", f"{name}.report.json"]


def test_stdout_on_a_full_disk_is_a_user_error(write_config: WriteConfig) -> None:
    config = write_config(n_images=2)
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "trtq", "calibrate", str(config)],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            check=False,
        )
    assert done.returncode == 1, done.stderr
    assert "cannot write: No space left on device" in done.stderr and "internal error" not in done.stderr
