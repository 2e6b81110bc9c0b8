"""The trtq command line: calibrate, cache inspect, cache check, and how errors look."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from conftest import DETECTOR, REPO, WriteConfig
from reference_graph import float_activations
from typer.testing import CliRunner

from trtq.cache import read_cache
from trtq.cli.main import app
from trtq.resources import resolve_path

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def calibrated_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import yaml
    from conftest import classifier_config, listed_photos

    tmp = tmp_path_factory.mktemp("cli")
    listed = listed_photos(5)
    (tmp / "images.txt").write_text("\n".join(listed) + "\n")
    path = tmp / "model.yaml"
    path.write_text(yaml.safe_dump(classifier_config("images.txt", "out/model.cache", last_batch="wrap")))
    code, output = invoke("calibrate", str(path))
    assert code == 0, output
    return path


def test_calibrate_reports_what_it_did(calibrated_config: Path) -> None:
    cache = calibrated_config.parent / "out" / "model.cache"
    assert cache.is_file()
    assert (cache.parent / "model.cache.manifest.json").is_file()
    assert (cache.parent / "model.cache.report.json").is_file()
    code, output = invoke("calibrate", str(calibrated_config))
    assert code == 0
    assert "5 images in 3 batches" in output and "1 wrapped" in output
    assert "entropy*" in output and "(* = cache)" in output


def test_cache_inspect_lists_every_tensor(calibrated_config: Path) -> None:
    cache = calibrated_config.parent / "out" / "model.cache"
    code, output = invoke("cache", "inspect", str(cache), "--sort", "name")
    assert code == 0
    tensors = len(cache.read_text().splitlines()) - 1
    assert "TensorRT 10.16.1 (101601), EntropyCalibration2" in output
    assert f"\n{tensors} tensors\n" in output
    x_scale = read_cache(cache).scales["x"]
    assert f"{x_scale:.6g}" in output and f"{x_scale * 127:.6g}" in output


def test_cache_check_up_to_date_then_stale(calibrated_config: Path) -> None:
    cache = calibrated_config.parent / "out" / "model.cache"
    code, output = invoke("cache", "check", str(calibrated_config), "--cache", str(cache))
    assert code == 0 and "up to date" in output
    images = calibrated_config.parent / "images.txt"
    original = images.read_text()
    try:
        images.write_text("\n".join(reversed(original.split())) + "\n")
        code, output = invoke("cache", "check", str(calibrated_config), "--cache", str(cache))
        assert code == 1
        assert "stale" in output and "different order" in output
    finally:
        images.write_text(original)


def test_missing_manifest_is_refused(calibrated_config: Path, tmp_path: Path) -> None:
    lone = tmp_path / "lone.cache"
    lone.write_bytes((calibrated_config.parent / "out" / "model.cache").read_bytes())
    code, output = invoke("cache", "check", str(calibrated_config), "--cache", str(lone))
    assert code == 1 and "no manifest beside the cache" in output


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "trtq", *args], capture_output=True, text=True, check=False)


def test_errors_are_one_line_without_traceback(write_config: WriteConfig, tmp_path: Path) -> None:
    config = write_config()
    config.write_text(config.read_text().replace("algorithm", "x").replace("color: bgr", "colr: bgr"))
    result = run_cli("calibrate", str(config))
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: {config}:") and "did you mean 'color'" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout

    bad_cache = tmp_path / "bad.cache"
    bad_cache.write_text("TRT-101601-EntropyCalibration2\nconv1 3c010204\n")
    result = run_cli("cache", "inspect", str(bad_cache))
    assert result.returncode == 1 and f"{bad_cache}:2:" in result.stderr and "Traceback" not in result.stderr

    result = run_cli("--verbose", "cache", "inspect", str(bad_cache))
    assert result.returncode == 1 and "Traceback" in result.stderr and f"{bad_cache}:2:" in result.stderr


def test_bad_image_error_names_list_and_line(write_config: WriteConfig) -> None:
    config = write_config(n_images=4)
    images = config.parent / "images.txt"
    images.write_text(images.read_text() + "does-not-exist.jpg\n")
    result = run_cli("calibrate", str(config))
    assert result.returncode == 1
    assert f"{images}:5:" in result.stderr and "image file not found" in result.stderr
    assert not (config.parent / "out" / "model.cache").exists()


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.startswith("trtq ")


def test_the_readme_demo_config_calibrates(tmp_path: Path) -> None:
    """configs/demo.yaml as the README runs it, on its first 2 photos (the full list takes ~30 s)."""
    import yaml

    data = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    data["calibration"].update(
        images=str(REPO / "calibrators" / "skimage_photos.txt"),
        max_images=2,
        cache=str(tmp_path / "demo.cache"),
    )
    config = tmp_path / "demo.yaml"
    config.write_text(yaml.safe_dump(data))
    code, output = invoke("calibrate", str(config))
    assert code == 0, output
    cache = read_cache(tmp_path / "demo.cache")
    assert cache.algorithm == "EntropyCalibration2" and cache.version == 101601
    model = onnx.load(str(resolve_path(DETECTOR, REPO)))
    assert set(cache.scales) == float_activations(model)  # input included, constants folded away
    assert cache.scales["x"] * 127 == pytest.approx(1.0, abs=1e-3)  # (pixel/255 - 0.5)/0.5 spans [-1, 1]
