"""``trtq doctor`` here (no TensorRT: the CPU path is proven, the rest named as missing) and its GPU
checks, the ones tests/test_gpu.py runs, against the stand-in TensorRT 10 and 11 of trt_fake.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import trt_fake
from typer.testing import CliRunner

from trtq.cli.main import app


def doctor(tmp_path: Path, *args: str) -> tuple[int, dict[str, object]]:
    out = tmp_path / "doctor.json"
    result = CliRunner().invoke(app, ["doctor", "--json", str(out), *args])
    assert out.is_file(), result.output
    return result.exit_code, json.loads(out.read_text())


def statuses(report: dict[str, object]) -> dict[str, tuple[str, str]]:
    return {c["check"]: (c["status"], c["detail"]) for c in report["checks"]}  # type: ignore[union-attr,index]


def test_without_tensorrt_it_names_what_is_missing_and_proves_the_cpu_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for module in ("tensorrt", "pycuda", "pycuda.driver"):
        monkeypatch.setitem(sys.modules, module, None)  # import fails, as where trtq is developed
    code, report = doctor(tmp_path)
    assert code == 0 and report["ok"] and not report["gpu_checked"]
    found = {c["name"]: c for c in report["found"]}  # type: ignore[union-attr,index]
    assert found["TensorRT"]["version"] is None and "cannot import tensorrt" in found["TensorRT"]["detail"]
    assert found["pycuda"]["version"] is None and found["NumPy"]["version"]
    assert statuses(report) == {
        "calibrate the tiny model on the CPU": ("pass", "9 tensors calibrated into cpu.cache")
    }
    commands = report["commands"]
    assert commands["calibrate"]["runs"] and not commands["build"]["runs"]  # type: ignore[index]
    assert "TensorRT" in commands["build"]["reason"]  # type: ignore[index]


def test_gpu_checks_pass_on_the_tensorrt_10_stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trt_fake.install(monkeypatch, "10.13.3.9")
    code, report = doctor(tmp_path, "--workdir", str(tmp_path / "work"))
    results = statuses(report)
    assert code == 0 and report["gpu_checked"], results
    assert {status for status, _ in results.values()} == {"pass"}, results
    assert len(results) == 1 + 6 + 6 + 4 + 1
    found = {c["name"]: c["version"] for c in report["found"]}  # type: ignore[union-attr,index]
    assert found["GPU"] == trt_fake.GPUS[0] and found["CUDA driver"] == "12.4"
    assert report["notes"] == [
        "caches from `trtq calibrate` target TensorRT 10.16.1 in their header by default (the newest "
        "TensorRT 10 on PyPI); this machine runs TensorRT 10.13.3.9: `trtq build` rewrites the header "
        "for it, or set calibration.trt_version to its major.minor.patch"
    ]
    assert results["build int8 from a CPU cache for another TensorRT"][1] == (
        "cache for TensorRT 10.8.0 used by TensorRT 10.13.3, no batch asked for"
    )


def test_tensorrt_11_skips_weakly_typed_checks_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trt_fake.install(monkeypatch, "11.1.0.106")
    code, report = doctor(tmp_path)
    results = statuses(report)
    assert code == 0, results
    skipped = {name for name, (status, _) in results.items() if status == "skip"}
    assert skipped == {
        "build fp16",
        "build int8, entropy calibrator",
        "build int8, minmax calibrator",
        "build int8 from a CPU cache for another TensorRT",
        "run fp16 vs ONNX Runtime",
        "run int8-entropy vs ONNX Runtime",
        "run int8-minmax vs ONNX Runtime",
        "run int8-cpu-cache vs ONNX Runtime",
    }
    assert all("TensorRT 11 removed weak typing" in results[name][1] for name in skipped)
    assert results["build int8-qdq from trtq qdq"][0] == "pass"
    assert results["bench int8-qdq with CUDA graph"][0] == "pass"
    assert report["notes"] == []  # no calibration cache is read on TensorRT 11


def test_without_libcudart_the_cuda_graph_checks_are_skipped_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without libcudart bench times plain enqueues, as "found" says: the CUDA-graph bench checks are
    skipped with that reason (not failed), and doctor exits 0 when nothing else fails."""
    trt_fake.install(monkeypatch, "10.16.1.11", cudart=False)
    code, report = doctor(tmp_path)
    results = statuses(report)
    assert code == 0 and report["ok"], results
    found = {c["name"]: c for c in report["found"]}  # type: ignore[union-attr,index]
    assert found["CUDA runtime"]["version"] is None
    assert "bench times plain enqueues without it" in found["CUDA runtime"]["detail"]
    for engine in ("fp32", "int8-qdq"):
        assert results[f"bench {engine} without CUDA graph"][0] == "pass"
        status, detail = results[f"bench {engine} with CUDA graph"]
        assert status == "skip" and detail.startswith("no CUDA runtime (libcudart) found: ")
        assert "CUDA graphs need the CUDA 12 or 13 runtime" in detail
    assert {status for status, _ in results.values()} == {"pass", "skip"}


def test_a_failing_check_is_named_with_its_reason_and_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TensorRT rejecting the timing cache it wrote itself is a failure: named, with its reason."""
    trt_fake.install(monkeypatch, "10.16.1.11")
    accept = trt_fake.BuilderConfig.set_timing_cache

    def reject_any_timings(self: trt_fake.BuilderConfig, cache: trt_fake.TimingCache, ignore: bool) -> bool:
        return not cache.data and accept(self, cache, ignore)

    monkeypatch.setattr(trt_fake.BuilderConfig, "set_timing_cache", reject_any_timings)
    code, report = doctor(tmp_path)
    results = statuses(report)
    assert code == 1 and not report["ok"]
    status, detail = results["timing cache reused"]
    assert status == "fail" and "TensorRT rejected the timing cache it wrote itself" in detail
    assert results["bench fp32 with CUDA graph"][0] == "pass"
