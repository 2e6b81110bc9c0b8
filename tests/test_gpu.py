"""The real TensorRT path (``pytest -m gpu`` inside docker/): build, calibrate, reuse, bench, crosscheck,
int8-qdq from ``trtq qdq``, CPU-made percentile caches, MinMax, timing caches and CUDA graphs.

Skipped cleanly where TensorRT, pycuda or a GPU is missing. These tests have not run where trtq is
developed (no GPU there); the container's test-gpu target runs them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

pytestmark = pytest.mark.gpu

trt = pytest.importorskip("tensorrt")
if not hasattr(trt, "Builder"):  # a stubs-only 'tensorrt' namespace package is not TensorRT
    pytest.skip("the tensorrt module here is not TensorRT", allow_module_level=True)
cuda = pytest.importorskip("pycuda.driver")
try:
    cuda.init()
    if cuda.Device.count() == 0:
        raise RuntimeError("no CUDA device")
except Exception as exc:  # pycuda raises its own LogicError/RuntimeError without a driver
    pytest.skip(f"no usable GPU: {exc}", allow_module_level=True)

from trtq.cache import encode_version, read_cache, read_manifest  # noqa: E402
from trtq.calib.run import collect_histograms  # noqa: E402
from trtq.cli.main import app  # noqa: E402
from trtq.compare.scales import cross_check  # noqa: E402
from trtq.config import LoadedConfig, load_config  # noqa: E402
from trtq.data.from_config import calibration_entries  # noqa: E402
from trtq.runner.timing import TimingSettings, analyse, run_timed  # noqa: E402
from trtq.trt.builder import build  # noqa: E402
from trtq.trt.runner import TensorRTBackend, tensorrt_backend  # noqa: E402
from trtq.trt.version import trt_version  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def demo_variant(
    tmp: Path, precision: str, name: str | None = None, **sections: dict[str, Any]
) -> LoadedConfig:
    """configs/demo.yaml with absolute paths into ``tmp``; ``sections`` update its sections."""
    data = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    data["calibration"]["images"] = str(REPO / "calibrators" / "skimage_photos.txt")
    data["calibration"]["cache"] = str(tmp / "demo.cache")
    data["build"] = {"precision": precision, "engine": str(tmp / f"demo.{name or precision}.engine")}
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    path = tmp / f"demo.{name or precision}.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


def cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gpu")


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_build_engines(workdir: Path, precision: str) -> None:
    config = demo_variant(workdir, precision)
    outcome = build(config, force=True)
    assert outcome.engine.stat().st_size > 100_000 and not outcome.reused
    report = json.loads(outcome.report.read_text())
    assert report["precision"] == precision and report["layers"]
    if precision == "int8":
        images = len(calibration_entries(config))
        assert report["calibration"] == {
            "batches": images,
            "cache_reused": False,
            "cache": str(config.cache_path),
        }
        assert config.cache_path.read_text().startswith("TRT-10")
    assert build(config).reused  # unchanged inputs: the engine is reused


def test_int8_rebuild_reuses_the_cache_without_get_batch(workdir: Path) -> None:
    config = demo_variant(workdir, "int8")
    if not config.cache_path.is_file():
        build(config, force=True)
    outcome = build(config, force=True)
    report = json.loads(outcome.report.read_text())
    assert report["calibration"]["batches"] == 0 and report["calibration"]["cache_reused"]


def test_bench_tensorrt_engine(workdir: Path) -> None:
    config = demo_variant(workdir, "fp16")
    build(config)
    backend = tensorrt_backend(config.resolve(config.spec.build.engine or ""), config)
    trace = run_timed(backend, TimingSettings(warmup_ms=100, duration_s=0.5, iterations=20))
    result = analyse("fp16", backend, trace, (90.0, 99.0))
    assert len(trace.queries) >= 20
    for metric in ("latency", "compute", "h2d", "d2h", "enqueue"):
        assert result.metrics[metric].median > 0
    latency = result.metrics["latency"]
    assert latency.median == pytest.approx(
        result.metrics["h2d"].median + result.metrics["compute"].median + result.metrics["d2h"].median,
        rel=0.5,
    )


def test_crosscheck_tensorrt_cache_against_numpy(workdir: Path) -> None:
    config = demo_variant(workdir, "int8")
    if not config.cache_path.is_file():
        build(config, force=True)
    run = collect_histograms(config, calibration_entries(config))
    result = cross_check(read_cache(config.cache_path), run.scales("entropy"))
    assert len(result.compared) > 100
    # Expected from the rules trtq reimplements; a failure here is a finding about TensorRT's rules.
    assert result.median_abs_log_ratio < 0.1


def test_fp16_engine_outputs_match_fp32_onnxruntime(workdir: Path) -> None:
    from trtq.compare.models import compare_models, evaluation_inputs, run
    from trtq.model.session import inference_session

    config = demo_variant(workdir, "fp16")
    build(config)
    batches, count = evaluation_inputs(config, REPO / "calibrators" / "skimage_photos.txt")
    reference = run(inference_session(config.model_path), "x", batches[:4], min(count, 4))
    backend = tensorrt_backend(config.resolve(config.spec.build.engine or ""), config)
    engine = backend.infer(batches[0])
    assert set(engine) == set(reference)
    (metrics,) = compare_models({k: v[:1] for k, v in reference.items()}, engine)
    assert metrics.cosine > 0.99


def test_int8_qdq_engine_from_trtq_qdq_model(workdir: Path) -> None:
    calibrated = demo_variant(
        workdir, "int8", "qdq-source", calibration={"cache": str(workdir / "qdq.cache")}
    )
    cli("calibrate", str(calibrated.source))
    qdq_model = workdir / "demo.qdq.onnx"
    cli("qdq", str(calibrated.source), "-o", str(qdq_model))
    config = demo_variant(workdir, "int8-qdq", model={"path": str(qdq_model)})
    outcome = build(config, force=True)
    report = json.loads(outcome.report.read_text())
    assert report["precision"] == "int8-qdq" and report["calibration"] is None
    types = [t.lower() for layer in report["layers"] for t in layer["outputs"]]
    assert any("int8" in t for t in types), types  # the Q/DQ pairs made INT8 layers


def test_cpu_made_percentile_cache_is_used_without_get_batch(workdir: Path) -> None:
    """The headline workflow: scales from a CPU, header for calibration.trt_version (10.16.1),
    built by whatever TensorRT 10.x the container runs."""
    cache = workdir / "percentile.cache"
    config = demo_variant(
        workdir, "int8", "percentile", calibration={"algorithm": "percentile", "cache": str(cache)}
    )
    cli("calibrate", str(config.source))
    written = cache.read_bytes()
    outcome = build(config, force=True)
    report = json.loads(outcome.report.read_text())
    assert report["calibration"]["batches"] == 0 and report["calibration"]["cache_reused"]
    assert cache.read_bytes() == written  # the file keeps its header and provenance
    assert read_manifest(cache).scales_by.startswith("trtq ")


def test_minmax_calibrator_writes_a_minmax_cache(workdir: Path) -> None:
    cache = workdir / "minmax.cache"
    config = demo_variant(workdir, "int8", "minmax", calibration={"algorithm": "minmax", "cache": str(cache)})
    outcome = build(config, force=True)
    report = json.loads(outcome.report.read_text())
    assert report["calibration"]["batches"] == len(calibration_entries(config))
    parsed = read_cache(cache)
    assert parsed.algorithm == "MinMaxCalibration" and parsed.version == encode_version(trt_version())
    assert read_manifest(cache).scales_by == f"TensorRT {trt_version()} (MinMaxCalibration)"


def test_timing_cache_is_reused_across_two_builds(workdir: Path, capfd: pytest.CaptureFixture[str]) -> None:
    timing = workdir / "timing.cache"
    first = demo_variant(workdir, "fp16", "timed-a", build={"timing_cache": str(timing)})
    build(first, force=True)
    assert timing.stat().st_size > 0
    second = demo_variant(workdir, "fp16", "timed-b", build={"timing_cache": str(timing)})
    build(second, force=True)
    assert "rejected the timing cache" not in capfd.readouterr().err  # set_timing_cache accepted it
    assert timing.stat().st_size > 0
    assert not list(workdir.glob("timing.*.cache"))  # accepted: saved in place, not beside it


def test_bench_with_cuda_graph(workdir: Path) -> None:
    config = demo_variant(
        workdir,
        "fp16",
        "graph",
        benchmark={"cuda_graph": True, "warmup_ms": 50, "duration_s": 0.3, "iterations": 10},
    )
    build(config)
    out = workdir / "bench-graph.json"
    cli("bench", str(config.source), "--json", str(out))
    (result,) = json.loads(out.read_text())
    assert result["backend"] == "tensorrt" and result["queries"] >= 10
    assert result["metrics_ms"]["compute"]["median"] > 0
    assert not [w for w in result["warnings"] if "CUDA graph capture failed" in w]  # no fallback

    # The replayed graph computes what a plain enqueue computes on the same input.
    backend = TensorRTBackend(config.resolve(config.spec.build.engine or ""), config, True, False)
    assert backend._graph is not None and backend.warnings == []
    backend.query()
    replayed = [np.asarray(host, dtype=np.float32).copy() for host, _ in backend._outputs]
    enqueued = backend.infer(np.asarray(backend._inputs[0][0], dtype=np.float32).copy())
    for graph_output, plain_output in zip(replayed, enqueued.values(), strict=True):
        np.testing.assert_allclose(graph_output, plain_output, rtol=1e-3, atol=1e-3)
