"""trtq crosscheck: a cache compared with NumPy scales recomputed on the same batches."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import pytest
from conftest import WriteConfig
from typer.testing import CliRunner

from trtq.cache import read_cache
from trtq.cache.trt_format import CalibrationCache, format_cache
from trtq.cli.main import app
from trtq.compare.scales import cross_check


def test_cross_check_orders_worst_first_and_lists_one_sided_tensors() -> None:
    cache = CalibrationCache(
        101601, "EntropyCalibration2", {"a": 1.0, "b": 0.5, "c": 2.1, "parser_only": 0.1}
    )
    result = cross_check(cache, {"a": 1.0, "b": 1.0, "c": 2.0, "numpy_only": 3.0})
    assert [c.tensor for c in result.compared] == ["b", "c", "a"]
    assert result.compared[0].ratio == 0.5
    assert result.compared[1].ratio == pytest.approx(1.05)
    assert result.only_in_cache == ["parser_only"] and result.only_in_numpy == ["numpy_only"]
    assert result.share_within(0.01) == pytest.approx(1 / 3)
    assert result.share_within(0.10) == pytest.approx(2 / 3)
    assert result.median_abs_log_ratio == pytest.approx(math.log(1.05))


def test_zero_scales() -> None:
    result = cross_check(CalibrationCache(1, "X", {"z": 0.0, "w": 0.5}), {"z": 0.0, "w": 0.0})
    ratios = {c.tensor: c.ratio for c in result.compared}
    assert ratios == {"z": 1.0, "w": math.inf}


def test_crosscheck_command_on_a_real_calibration(write_config: WriteConfig) -> None:
    runner = CliRunner()
    config = write_config(n_images=4)
    assert runner.invoke(app, ["calibrate", str(config)]).exit_code == 0
    own = config.parent / "out" / "model.cache"
    result = runner.invoke(app, ["crosscheck", str(config), "--cache", str(own)])
    assert result.exit_code == 0, result.output
    report = json.loads((own.parent / "model.cache.crosscheck.json").read_text())
    assert report["summary"]["within_1_percent"] == 1.0
    assert report["summary"]["median_abs_log_ratio"] == 0.0
    assert report["only_in_cache"] == [] and report["only_in_numpy"] == []

    # A cache as TensorRT might write it: one tensor off by 30%, a parser-made tensor, one missing.
    parsed = read_cache(own)
    names = list(parsed.scales)
    scales = {name: parsed.scales[name] for name in names[1:]}
    off = names[5]
    scales[off] = float(struct.unpack(">f", struct.pack(">f", scales[off] * 1.3))[0])
    scales["(Unnamed Layer* 46) [Constant]_output"] = 0.01
    trt_like = config.parent / "trt.cache"
    trt_like.write_text(format_cache(CalibrationCache(101303, "EntropyCalibration2", scales)))
    out = config.parent / "check.json"
    result = runner.invoke(app, ["crosscheck", str(config), "--cache", str(trt_like), "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["tensors"][0]["tensor"] == off
    assert report["tensors"][0]["ratio"] == pytest.approx(1.3, rel=1e-6)
    assert report["only_in_cache"] == ["(Unnamed Layer* 46) [Constant]_output"]
    assert report["only_in_numpy"] == [names[0]]
    assert report["summary"]["compared"] == len(names) - 1
    assert report["summary"]["within_1_percent"] == pytest.approx((len(names) - 2) / (len(names) - 1))
    assert Path(out).is_file()
