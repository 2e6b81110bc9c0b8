"""A cache's manifest and report belong to it: no command may write over them while reading the cache."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from trtq.cli.main import app


def test_outputs_onto_a_caches_manifest_or_report_are_refused(calibrated_on_two: Path) -> None:
    config = calibrated_on_two
    runner = CliRunner()
    out = config.parent / "out"
    cache, manifest, report = (
        out / "model.cache",
        out / "model.cache.manifest.json",
        out / "model.cache.report.json",
    )
    before = {path: path.read_bytes() for path in (cache, manifest, report)}
    images = config.parent / "images.txt"
    attempts = [
        ["sensitivity", str(config), "--images", str(images), "--json", str(manifest)],
        ["crosscheck", str(config), "--cache", str(cache), "--json", str(report)],
        ["qdq", str(config), "-o", str(out / "model.cache.report")],  # its summary is NAME.json
        ["cache", "retarget", str(cache), "--trt-version", "10.9.0", "-o", str(report)],
        # commands that do not read the cache must not write over the config's set either
        ["report", str(config), "-o", str(cache)],
        ["report", str(config), "-o", str(report)],
        ["bench", str(config), "--backend", "onnxruntime", "--duration-s", "0.1", "--json", str(manifest)],
    ]
    for args in attempts:
        result = runner.invoke(app, args)
        assert result.exit_code == 1, (args, result.output)
        assert "an output may never overwrite" in " ".join(result.output.split()), args
    assert {path: path.read_bytes() for path in before} == before


def test_retarget_to_another_set_carries_the_report_along(calibrated_on_two: Path) -> None:
    config = calibrated_on_two
    runner = CliRunner()
    out = config.parent / "out"
    other = out / "other.cache"
    (out / "other.cache.report.json").write_text('{"from": "another calibration"}\n')
    result = runner.invoke(
        app, ["cache", "retarget", str(out / "model.cache"), "--trt-version", "10.9.0", "-o", str(other)]
    )
    assert result.exit_code == 0, result.output
    assert (out / "other.cache.report.json").read_bytes() == (out / "model.cache.report.json").read_bytes()
    check = runner.invoke(app, ["cache", "check", str(config), "--cache", str(other)])
    assert "report is not the one" not in check.output


def test_a_stale_cache_is_used_with_a_warning_naming_what_changed(
    calibrated_on_two: Path, tmp_path: Path
) -> None:
    config = calibrated_on_two
    runner = CliRunner()
    data = yaml.safe_load(config.read_text())
    data["preprocess"]["mean"] = [0.4]
    stale = config.with_name("stale.yaml")
    stale.write_text(yaml.safe_dump(data))
    result = runner.invoke(app, ["qdq", str(stale), "-o", str(tmp_path / "m.qdq.onnx")])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "does not match" in text and "preprocess.mean changed" in text
    fresh = runner.invoke(app, ["qdq", str(config), "-o", str(tmp_path / "n.qdq.onnx")])
    assert "does not match" not in fresh.output
