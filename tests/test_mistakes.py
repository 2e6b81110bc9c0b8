"""Each class of user mistake gets one clear error and a non-zero exit, and leaves every input as it was."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import yaml
from conftest import DETECTOR, REPO
from typer.testing import CliRunner

from trtq.cache.manifest import Manifest, manifest_path, read_manifest, write_manifest
from trtq.cache.trt_format import read_cache, write_cache
from trtq.cli.main import app
from trtq.config import load_config
from trtq.data.from_config import calibration_entries
from trtq.errors import TrtqError
from trtq.fingerprint import fingerprint_config
from trtq.model.files import load_onnx
from trtq.model.index import activation_tensors
from trtq.qdq.scales import cache_scales
from trtq.resources import resolve_path

runner = CliRunner()


def invoke(*args: str | Path) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def _digests(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


@pytest.fixture
def project(tmp_path: Path, photos: list[Path], classifier_path: Path) -> Path:
    """A user's folder: the text-direction classifier, two photos, their list, a config and a cache."""
    shutil.copy(classifier_path, tmp_path / "m.onnx")
    for index, photo in enumerate(photos[:2]):
        shutil.copy(photo, tmp_path / f"photo{index}{photo.suffix}")
    listed = sorted(p.name for p in tmp_path.glob("photo*"))
    (tmp_path / "images.txt").write_text("\n".join(listed) + "\n")
    config = {
        "model": {"path": "m.onnx"},
        "inputs": [{"name": "x", "shape": [1, 3, 48, 192]}],
        "preprocess": {"color": "bgr", "mean": [0.5], "std": [0.5]},
        "calibration": {"images": "images.txt", "cache": "out/m.cache"},
    }
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    names = list(activation_tensors(onnx.load(str(classifier_path))))
    write_cache(tmp_path / "given.cache", dict.fromkeys(names, 0.01))
    return tmp_path


def _set_cache(project: Path, cache: str) -> None:
    config = yaml.safe_load((project / "cfg.yaml").read_text())
    config["calibration"]["cache"] = cache
    (project / "cfg.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def _refused(project: Path, args: list[str], *roles: str) -> None:
    """The command exits 1 naming both roles, and no file in the project changed."""
    before = _digests(project)
    code, output = invoke(*args)
    flat = " ".join(output.split())
    assert code == 1, output
    assert "internal error" not in output
    for role in roles:
        assert role in flat, output
    assert _digests(project) == before


@pytest.mark.parametrize(
    ("cache", "role"),
    [
        ("sub/../m.onnx", "is the model (model.path in cfg.yaml)"),
        ("cfg.yaml", "is the config cfg.yaml"),
        ("images.txt", "is the image list (calibration.images in cfg.yaml)"),
        ("photo1.png", "is an image listed at images.txt:2"),
    ],
)
def test_calibrate_never_writes_over_its_inputs(
    project: Path, cache: str, role: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project)
    listed = (project / "images.txt").read_text().split()
    _set_cache(project, cache.replace("photo1.png", listed[1]))
    _refused(project, ["calibrate", "cfg.yaml"], "calibration.cache", role.replace("photo1.png", listed[1]))


@pytest.mark.parametrize(
    ("args", "roles"),
    [
        (["qdq", "cfg.yaml", "-o", "m.onnx"], ["--output m.onnx", "is the model"]),
        (
            ["qdq", "cfg.yaml", "--cache", "given.cache", "-o", "given.cache"],
            ["--output given.cache", "cache"],
        ),
        (["report", "cfg.yaml", "-o", "./images.txt"], ["--output", "is the image list"]),
        (["report", "cfg.yaml", "--cache", "given.cache", "-o", "given.cache"], ["is --cache given.cache"]),
        (["crosscheck", "cfg.yaml", "--cache", "given.cache", "--json", "link.json"], ["is the model"]),
        (
            ["compare", "cfg.yaml", "--images", "images.txt", "--json", "images.txt"],
            ["is the held-out image list"],
        ),
        (
            [
                "sensitivity",
                "cfg.yaml",
                "--images",
                "images.txt",
                "--cache",
                "given.cache",
                "--json",
                "cfg.yaml",
            ],
            ["--json cfg.yaml", "is the config"],
        ),
        (["bench", "m.onnx", "--json", "m.onnx"], ["--json m.onnx", "is the bench target m.onnx"]),
        (["bench", "cfg.yaml", "--json", "PHOTO1"], ["is an image listed at images.txt:2"]),
        (
            ["compare", "cfg.yaml", "--images", "held.txt", "--algorithms", "minmax", "--json", "PHOTO1"],
            ["is an image listed at images.txt:2"],  # --algorithms calibrates on the config's images
        ),
    ],
)
def test_commands_never_write_over_their_inputs(
    project: Path, args: list[str], roles: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project)
    (project / "link.json").symlink_to(project / "m.onnx")  # a symlink to an input is that input
    photos = (project / "images.txt").read_text().split()
    (project / "held.txt").write_text(photos[0] + "\n")
    _refused(project, [photos[1] if arg == "PHOTO1" else arg for arg in args], *roles)


@pytest.mark.parametrize(
    ("json_path", "message"),
    [
        ("out", "is a directory"),
        ("images.txt/x.json", "is a file, so no directory can be made there"),
        ("/proc/trtq/x.json", "cannot write in /proc"),  # refused even to root
    ],
)
def test_unwritable_outputs_are_refused_before_any_work(
    project: Path, json_path: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project)
    (project / "out").mkdir()
    _refused(project, ["crosscheck", "cfg.yaml", "--cache", "given.cache", "--json", json_path], message)
    _set_cache(project, json_path)
    _refused(project, ["calibrate", "cfg.yaml"], message)


@pytest.mark.parametrize(
    "args",
    [
        ["bench", "m.onnx", "--duration-s", "nan"],
        ["bench", "m.onnx", "--duration-s", "0"],
        ["bench", "m.onnx", "--duration-s", "1e308"],
        ["bench", "m.onnx", "--warmup-ms", "1e300"],
        ["bench", "m.onnx", "--warmup-ms", "nan"],
        ["bench", "m.onnx", "--warmup-ms", "-1"],
        ["bench", "m.onnx", "--iterations", "0"],
        ["bench", "m.onnx", "--backend", "tensorrtx"],
        ["calibrate", "cfg.yaml", "--top", "-1"],
        ["crosscheck", "cfg.yaml", "--cache", "given.cache", "--top", "-1"],
        ["sensitivity", "cfg.yaml", "--images", "images.txt", "--worst", "-1"],
        ["sensitivity", "cfg.yaml", "--images", "images.txt", "--top", "-1"],
        ["report", "cfg.yaml", "--top", "-5"],
        ["cache", "inspect", "given.cache", "--sort", "size"],
        ["cache", "inspect", "given.cache", "--top", "-1"],
    ],
)
def test_bad_command_line_values_are_usage_errors(
    project: Path, args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project)
    before = _digests(project)
    code, output = invoke(*args)
    assert code == 2, output
    assert "Invalid value for" in output and args[-2] in output
    assert _digests(project) == before


def _inputless_model(path: Path) -> None:
    constant = onnx.helper.make_node(
        "Constant", [], ["y"], value=onnx.helper.make_tensor("c", onnx.TensorProto.FLOAT, [1], [1.0])
    )
    graph = onnx.helper.make_graph(
        [constant], "g", [], [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])]
    )
    onnx.save(onnx.helper.make_model(graph), str(path))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bench", "missing.onnx"], "missing.onnx: bench target not found"),
        (["bench", "images.txt"], "images.txt: not an ONNX model"),
        (["bench", "empty.onnx"], "empty.onnx: the model has no inputs to feed"),
        (["bench", "m.onnx", "--shape", "image:1x3x48x192"], "--shape image: m.onnx has no such input"),
        (["bench", "m.onnx", "--shape", "x:1x3x48"], "--shape x:1x3x48: the model's input has shape"),
        (["bench", "m.onnx", "--shape", "x:1x3x0x192"], "positive dims"),
        (["bench", "m.onnx", "--shape", "x:1x3x48x192", "--shape", "x:2x3x48x192"], "already has a --shape"),
        (["bench", "cfg.yaml", "--shape", "x:1x3x48x192"], "--shape is for bare ONNX models"),
        (
            ["compare", "text.yaml", "--images", "images.txt", "--cache", "given.cache"],
            "not a readable ONNX model",
        ),
        (
            ["report", "cfg.yaml", "--sensitivity", "bench.json"],
            "bench.json: (top level): Input should be a valid dictionary",
        ),
        (
            ["report", "cfg.yaml", "--bench", "sensitivity.json"],
            "sensitivity.json: (top level): Input should be a valid list",
        ),
        (["report", "cfg.yaml", "--bench", "images.txt"], "images.txt: cannot read JSON"),
        (
            ["crosscheck", "cfg.yaml", "--cache", "nothere.cache"],
            "nothere.cache: calibration cache not found",
        ),
        (["crosscheck", "cfg.yaml", "--cache", "out"], "out: is a directory, not a calibration cache"),
    ],
)
def test_bad_files_name_the_file_and_what_was_expected(
    project: Path, args: list[str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project)
    (project / "out").mkdir()
    _inputless_model(project / "empty.onnx")
    text_model = yaml.safe_load((project / "cfg.yaml").read_text())
    text_model["model"]["path"] = "images.txt"
    (project / "text.yaml").write_text(yaml.safe_dump(text_model))
    (project / "bench.json").write_text('[{"target": "m.onnx", "backend": "onnxruntime"}]')
    (project / "sensitivity.json").write_text('{"full_int8": 0.99, "ranking": []}')
    _refused(project, args, message)


def test_tensorrt_missing_is_a_clear_error_not_a_bug(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here")
    monkeypatch.chdir(project)
    for args in (["build", "cfg.yaml"], ["bench", "m.onnx", "--backend", "tensorrt"]):
        code, output = invoke(*args)
        assert code == 1 and "TensorRT and pycuda are needed" in " ".join(output.split()), output


@pytest.mark.parametrize(
    ("error", "exit_code", "message"),
    [
        (
            AttributeError("'NoneType' object has no attribute 'num_io_tensors'"),
            3,
            "internal error (a bug in trtq",
        ),
        (ImportError("cannot import name 'helper'", name="onnx"), 3, "internal error (a bug in trtq"),
        (ImportError("No module named 'pycuda'", name="pycuda.driver"), 1, "TensorRT and pycuda are needed"),
    ],
)
def test_only_bugs_are_called_internal_errors(
    project: Path, monkeypatch: pytest.MonkeyPatch, error: Exception, exit_code: int, message: str
) -> None:
    def failing(*_: object) -> None:
        raise error

    monkeypatch.setattr("trtq.cli.calibrate.load_config", failing)
    code, output = invoke("calibrate", project / "cfg.yaml")
    assert code == exit_code and message in " ".join(output.split()), output


def test_interrupt_while_starting_up_is_one_line(tmp_path: Path) -> None:
    """Ctrl-C while the heavy imports load: simulated by a typer whose import is interrupted."""
    fake = tmp_path / "typer"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise KeyboardInterrupt\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"}
    result = subprocess.run(
        [sys.executable, "-m", "trtq", "--version"], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 130
    assert result.stderr == "interrupted\n"


def test_interrupt_inside_an_extensions_import_is_one_line(tmp_path: Path) -> None:
    """Ctrl-C while a C extension initialises surfaces as its ImportError, caused by the interrupt."""
    fake = tmp_path / "typer"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "try:\n    raise KeyboardInterrupt\nexcept KeyboardInterrupt as exc:\n"
        "    raise ImportError('initialization failed') from exc\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"}
    result = subprocess.run(
        [sys.executable, "-m", "trtq", "--version"], env=env, capture_output=True, text=True, check=False
    )
    assert (result.returncode, result.stderr) == (130, "interrupted\n")


def test_interrupt_inside_a_command_is_one_line(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*_: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("trtq.cli.calibrate.load_config", interrupted)
    code, output = invoke("calibrate", project / "cfg.yaml")
    assert code == 130 and output.strip() == "interrupted: no output was half-written"

    def import_interrupted(*_: object) -> None:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as exc:
            raise ImportError("initialization failed") from exc

    monkeypatch.setattr("trtq.cli.calibrate.load_config", import_interrupted)
    code, output = invoke("calibrate", project / "cfg.yaml")
    assert code == 130 and output.strip() == "interrupted: no output was half-written"


def _foreign_cache(path: Path) -> set[str]:
    """Scales for the PP-OCRv4 detector's activations: a real model from the same exporter (Paddle),
    so a few generic names (x, depthwise_conv2d_0.tmp_0, ...) are shared by chance."""
    names = set(activation_tensors(load_onnx(resolve_path(DETECTOR, REPO))))
    write_cache(path, dict.fromkeys(sorted(names), 0.01))
    return names


@pytest.mark.parametrize(
    "args",
    [
        ["crosscheck", "cfg.yaml", "--cache", "foreign.cache"],
        ["qdq", "cfg.yaml", "--cache", "foreign.cache", "-o", "q.onnx"],
        ["compare", "cfg.yaml", "--images", "images.txt", "--cache", "foreign.cache"],
        ["sensitivity", "cfg.yaml", "--images", "images.txt", "--cache", "foreign.cache"],
        ["report", "cfg.yaml", "--cache", "foreign.cache"],
    ],
)
def test_a_cache_of_another_model_is_refused(
    project: Path, args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project)
    foreign = _foreign_cache(project / "foreign.cache")
    needed = set(activation_tensors(onnx.load(str(project / "m.onnx"))))
    shared = len(needed & foreign)
    assert 0 < shared < len(needed) / 2
    _refused(
        project, args, f"has scales for {shared} of the model's {len(needed)} activations", "another model"
    )


def test_a_partly_covering_cache_warns_with_what_is_missing(project: Path) -> None:
    config = load_config(project / "cfg.yaml")
    full = read_cache(project / "given.cache").scales
    names = list(full)
    kept = {name: full[name] for name in names[: math.ceil(0.7 * len(names))]}
    write_cache(project / "partial.cache", kept)
    warnings: list[str] = []
    _, scales = cache_scales(config, project / "partial.cache", warnings.append)
    assert scales == kept
    missing = [name for name in names if name not in kept]
    assert warnings == [
        f"{project / 'partial.cache'} has no scale for {len(missing)} of the model's activations: "
        + ", ".join(missing[:8])
        + (" ..." if len(missing) > 8 else "")
    ]
    write_cache(project / "small.cache", {name: full[name] for name in names[: len(names) // 3]})
    with pytest.raises(TrtqError, match="another model"):
        cache_scales(config, project / "small.cache")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (
            ("calibration", "batch_size"),
            True,
            "calibration.batch_size: True: Input should be a valid integer",
        ),
        (("calibration", "max_images"), "8", "calibration.max_images: '8': Input should be a valid integer"),
        (
            ("calibration", "percentile"),
            math.nan,
            "calibration.percentile: nan: Input should be a finite number",
        ),
        (("benchmark", "duration_s"), math.inf, "benchmark.duration_s: inf: Input should be a finite number"),
        (("preprocess", "mean"), [True], "preprocess.mean.0: True: Input should be a valid number"),
        (
            ("inputs", 0, "shape"),
            [1, 3, 48.0, 192],
            "inputs.0.shape.2: 48.0: Input should be a valid integer",
        ),
    ],
)
def test_config_values_must_be_what_the_key_holds(
    project: Path, key: tuple[str | int, ...], value: object, message: str
) -> None:
    config = yaml.safe_load((project / "cfg.yaml").read_text())
    config.setdefault("benchmark", {})
    section = config
    for part in key[:-1]:
        section = section[part]
    section[key[-1]] = value
    (project / "cfg.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    with pytest.raises(TrtqError) as error:
        load_config(project / "cfg.yaml")
    assert re.fullmatch(
        rf"{re.escape(str(project / 'cfg.yaml'))}:\d+: {re.escape(message)}", str(error.value)
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("TRT-0-EntropyCalibration2\nx: 3c010204\n", ":1: 0 is not a TensorRT version number"),
        ("TRT-99999999-EntropyCalibration2\nx: 3c010204\n", ":1: 99999999 is not a TensorRT version number"),
        ("TRT-101601-PercentileCalibration\nx: 3c010204\n", ":1: unknown calibrator 'PercentileCalibration'"),
        ("TRT-101601-EntropyCalibration2\nx: 7fc00000\n", ":2: tensor 'x' has an invalid scale nan"),
        ("TRT-101601-EntropyCalibration2\nx: ff800000\n", ":2: tensor 'x' has an invalid scale -inf"),
    ],
)
def test_cache_values_must_be_what_tensorrt_writes(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.cache"
    path.write_text(text)
    with pytest.raises(TrtqError, match=re.escape(f"{path}{message}")):
        read_cache(path)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (("batch_size",), True, "'batch_size' must be int, got True"),
        (("batch_size",), "8", "'batch_size' must be int, got '8'"),
        (("cache_sha256",), 0, "'cache_sha256' must be str, got 0"),
        (("algorithm",), None, "'algorithm' must be str, got None"),
        (("fingerprint", "model_sha256"), 5, "fingerprint.model_sha256: Input should be a valid string"),
        (("fingerprint", "image_hashes"), "ab", "fingerprint.image_hashes: Input should be a valid list"),
        (("fingerprint", "inputs"), {"x": [True]}, "fingerprint.inputs.x.0: Input should be a valid integer"),
    ],
)
def test_manifest_fields_must_have_their_types(
    project: Path, field: tuple[str, ...], value: object, message: str
) -> None:
    config = load_config(project / "cfg.yaml")
    fingerprint = fingerprint_config(config, calibration_entries(config))
    write_manifest(config.cache_path, Manifest(fingerprint, "0" * 64, "entropy", 1, "10.16.1"))
    assert read_manifest(config.cache_path).batch_size == 1
    manifest = manifest_path(config.cache_path)
    data = json.loads(manifest.read_text())
    section = data
    for part in field[:-1]:
        section = section[part]
    section[field[-1]] = value
    manifest.write_text(json.dumps(data))
    expected = f"{manifest}: manifest is missing or has a bad field: {message}"
    with pytest.raises(TrtqError, match=re.escape(expected)):
        read_manifest(config.cache_path)


def test_ctrl_c_during_calibration_keeps_the_old_set(project: Path) -> None:
    """A real SIGINT to a running ``trtq calibrate``: one line, exit 130, the previous set untouched."""
    out = project / "out"
    out.mkdir()
    old = {
        name: f"old {name}\n".encode() for name in ("m.cache", "m.cache.manifest.json", "m.cache.report.json")
    }
    for name, data in old.items():
        (out / name).write_bytes(data)
    photos = (project / "images.txt").read_text().split()
    (project / "images.txt").write_text("\n".join(photos * 300) + "\n")  # long enough to be interrupted
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-m", "trtq", "calibrate", "cfg.yaml"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().startswith("calibrating m.onnx on 600 images")
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=120)
    assert child.returncode == 130
    assert stderr.strip() == "interrupted: no output was half-written"
    assert {p.name: p.read_bytes() for p in out.iterdir()} == old
