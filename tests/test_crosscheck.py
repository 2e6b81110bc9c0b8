"""trtq crosscheck: a cache compared with NumPy scales recomputed on the same batches."""

from __future__ import annotations

import json
import math

import pytest
from conftest import PARSER_MADE, REPO, TEXT_CLASSIFIER, WriteConfig, hand_made_minmax_cache, oracle_tensors
from typer.testing import CliRunner

from trtq.cache.trt_format import make_cache
from trtq.cli.main import app
from trtq.compare.scales import cross_check
from trtq.resources import resolve_path


def test_cross_check_orders_worst_first_and_lists_one_sided_tensors() -> None:
    cache = make_cache({"a": 1.0, "b": 0.5, "c": 2.1, "parser_only": 0.1})
    result = cross_check(cache, {"a": 1.0, "b": 1.0, "c": 2.0, "numpy_only": 3.0})
    assert [c.tensor for c in result.compared] == ["b", "c", "a"]
    assert result.compared[0].ratio == 0.5
    assert result.compared[1].ratio == pytest.approx(1.05)
    assert result.only_in_cache == ["parser_only"] and result.only_in_numpy == ["numpy_only"]
    assert result.share_within(0.01) == pytest.approx(1 / 3)
    assert result.share_within(0.10) == pytest.approx(2 / 3)
    assert result.median_abs_log_ratio == pytest.approx(math.log(1.05))


def test_zero_scales() -> None:
    result = cross_check(make_cache({"z": 0.0, "w": 0.5}), {"z": 0.0, "w": 0.0})
    ratios = {c.tensor: c.ratio for c in result.compared}
    assert ratios == {"z": 1.0, "w": math.inf}


def test_crosscheck_against_scales_computed_by_hand(write_config: WriteConfig) -> None:
    config = write_config(n_images=4)  # batch 2: all 4 images are used
    tensors = oracle_tensors(resolve_path(TEXT_CLASSIFIER, REPO))
    off = tensors[3]
    trt_like = hand_made_minmax_cache(config.parent, 4, {off: 1.3})
    out = config.parent / "check.json"
    runner = CliRunner()
    result = runner.invoke(app, ["crosscheck", str(config), "--cache", str(trt_like), "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["algorithm"] == "minmax"  # from the cache header
    ratios = {t["tensor"]: t["ratio"] for t in report["tensors"]}
    assert set(ratios) == set(tensors)
    assert report["tensors"][0]["tensor"] == off
    assert ratios.pop(off) == pytest.approx(1.3, rel=1e-6)
    for tensor, ratio in ratios.items():
        assert ratio == pytest.approx(1.0, rel=1e-5), tensor  # max |x| / 127, as computed by hand
    assert report["only_in_cache"] == [PARSER_MADE]
    assert report["only_in_numpy"] and not set(report["only_in_numpy"]) & set(tensors)
    summary = report["summary"]
    assert summary["compared"] == len(tensors)
    assert summary["within_1_percent"] == pytest.approx((len(tensors) - 1) / len(tensors))


def test_crosscheck_json_stays_strict_when_a_cache_scale_is_infinite(write_config: WriteConfig) -> None:
    # TensorRT writes an infinite scale as 7f800000; the JSON must still parse as standard JSON.
    def no_constants(name: str) -> None:
        raise AssertionError(f"non-standard JSON constant {name}")

    config = write_config(n_images=4)
    off = oracle_tensors(resolve_path(TEXT_CLASSIFIER, REPO))[3]
    trt_like = hand_made_minmax_cache(config.parent, 4, {off: math.inf})
    assert f"{off}: 7f800000" in trt_like.read_text()
    out = config.parent / "check.json"
    arguments = ["crosscheck", str(config), "--cache", str(trt_like), "--json", str(out)]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text(), parse_constant=no_constants)
    entry = next(t for t in report["tensors"] if t["tensor"] == off)
    assert entry["cache_scale"] is None and entry["ratio"] is None and entry["numpy_scale"] > 0
