"""The real TensorRT path (``pytest -m gpu`` inside docker/): first ``trtq doctor``'s GPU checks on its
tiny model (the same functions, trtq/doctor/checks.py), then the demo model: build, calibrate, reuse,
bench, crosscheck, int8-qdq from ``trtq qdq``, CPU-made caches, timing caches, CUDA graphs.

Gated per TensorRT major version: TensorRT 11 removed weak typing, so there fp16, int8 and
layer_precisions tests are skipped with that reason, and bench, timing-cache and CUDA-graph tests
run on fp32 and int8-qdq engines (on 10 too). The BF16 I/O test is skipped on a GPU below compute
capability 8.0 (TensorRT has no BF16 there). Skipped cleanly where TensorRT, pycuda or a GPU is
missing. These tests have not run where trtq is developed (no GPU there); the container's test-gpu
target runs them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
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
from trtq.doctor.checks import WEAKLY_TYPED_REMOVED, gpu_checks  # noqa: E402
from trtq.doctor.results import Check  # noqa: E402
from trtq.doctor.tiny import TinyWorkspace  # noqa: E402
from trtq.runner.timing import TimingSettings, analyse, run_timed  # noqa: E402
from trtq.trt.builder import build  # noqa: E402
from trtq.trt.runner import TensorRTBackend, tensorrt_backend  # noqa: E402
from trtq.trt.version import trt_major, trt_version  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
weakly_typed = pytest.mark.skipif(trt_major() >= 11, reason=WEAKLY_TYPED_REMOVED)
"""fp16, int8 (calibrators, caches) and layer_precisions: TensorRT 10 only."""
BENCHED = ["fp32", "int8-qdq"]
"""Engines the bench, timing-cache and CUDA-graph tests use: both build on TensorRT 10 and 11."""


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


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyWorkspace:
    return TinyWorkspace(tmp_path_factory.mktemp("tiny"))


DOCTOR_CHECKS = gpu_checks(trt_major())


@pytest.mark.parametrize("check", DOCTOR_CHECKS, ids=[check.name for check in DOCTOR_CHECKS])
def test_doctor_check(tiny: TinyWorkspace, check: Check) -> None:
    """``trtq doctor``'s checks in its order (runs use the engines earlier builds made)."""
    if check.skip is not None:
        pytest.skip(check.skip)
    check.run(tiny)


def qdq_variant(workdir: Path) -> LoadedConfig:
    """The demo as an int8-qdq engine from the model ``trtq qdq`` makes out of a CPU-made cache."""
    qdq_model = workdir / "demo.qdq.onnx"
    if not qdq_model.is_file():
        calibrated = demo_variant(
            workdir, "int8", "qdq-source", calibration={"cache": str(workdir / "qdq.cache")}
        )
        cli("calibrate", str(calibrated.source))
        cli("qdq", str(calibrated.source), "-o", str(qdq_model))
    return demo_variant(workdir, "int8-qdq", model={"path": str(qdq_model)})


def benched(workdir: Path, precision: str, name: str, **sections: dict[str, Any]) -> LoadedConfig:
    if precision == "fp32":
        return demo_variant(workdir, "fp32", name, **sections)
    base = qdq_variant(workdir)
    return demo_variant(workdir, "int8-qdq", name, model={"path": base.spec.model.path}, **sections)


@pytest.mark.parametrize(
    "precision", ["fp32", pytest.param("fp16", marks=weakly_typed), pytest.param("int8", marks=weakly_typed)]
)
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


@weakly_typed
def test_int8_rebuild_reuses_the_cache_without_get_batch(workdir: Path) -> None:
    config = demo_variant(workdir, "int8")
    if not config.cache_path.is_file():
        build(config, force=True)
    outcome = build(config, force=True)
    report = json.loads(outcome.report.read_text())
    assert report["calibration"]["batches"] == 0 and report["calibration"]["cache_reused"]


@pytest.mark.parametrize("precision", BENCHED)
def test_bench_tensorrt_engine(workdir: Path, precision: str) -> None:
    config = benched(workdir, precision, f"bench-{precision}")
    build(config)
    backend = tensorrt_backend(config.resolve(config.spec.build.engine or ""), config)
    trace = run_timed(backend, TimingSettings(warmup_ms=100, duration_s=0.5, iterations=20))
    result = analyse(precision, backend, trace, (90.0, 99.0))
    assert len(trace.queries) >= 20
    for metric in ("latency", "compute", "h2d", "d2h", "enqueue"):
        assert result.metrics[metric].median > 0
    latency = result.metrics["latency"]
    assert latency.median == pytest.approx(
        result.metrics["h2d"].median + result.metrics["compute"].median + result.metrics["d2h"].median,
        rel=0.5,
    )


@weakly_typed
def test_crosscheck_tensorrt_cache_against_numpy(workdir: Path) -> None:
    config = demo_variant(workdir, "int8")
    if not config.cache_path.is_file():
        build(config, force=True)
    run = collect_histograms(config, calibration_entries(config))
    result = cross_check(read_cache(config.cache_path), run.scales("entropy"))
    assert len(result.compared) > 100
    # Expected from the rules trtq reimplements; a failure here is a finding about TensorRT's rules.
    assert result.median_abs_log_ratio < 0.1


@weakly_typed
def test_fp16_engine_outputs_match_fp32_onnxruntime(workdir: Path) -> None:
    from trtq.compare.models import compare_models, evaluation_inputs, run
    from trtq.model.runner import OnnxRunner

    config = demo_variant(workdir, "fp16")
    build(config)
    batches, count = evaluation_inputs(config, REPO / "calibrators" / "skimage_photos.txt")
    reference = run(OnnxRunner(config.model_path), "x", batches[:4], min(count, 4))
    backend = tensorrt_backend(config.resolve(config.spec.build.engine or ""), config)
    engine = backend.infer({"x": batches[0]})
    assert set(engine) == set(reference)
    (metrics,) = compare_models({k: v[:1] for k, v in reference.items()}, engine)
    assert metrics.cosine > 0.99


def test_int8_qdq_engine_from_trtq_qdq_model(workdir: Path) -> None:
    outcome = build(qdq_variant(workdir), force=True)
    report = json.loads(outcome.report.read_text())
    assert report["precision"] == "int8-qdq" and report["calibration"] is None
    types = [t.lower() for layer in report["layers"] for t in layer["outputs"]]
    assert any("int8" in t for t in types), types  # the Q/DQ pairs made INT8 layers


@weakly_typed
def test_int8_precision_on_a_qdq_model_builds_without_calibrator(workdir: Path) -> None:
    """TensorRT quantizes explicitly and never calls a calibrator: no "consumed no batch" error."""
    model = qdq_variant(workdir).spec.model.path
    outcome = build(demo_variant(workdir, "int8", "int8-on-qdq", model={"path": model}), force=True)
    assert json.loads(outcome.report.read_text())["calibration"] is None


@weakly_typed
@pytest.mark.parametrize("algorithm", ["percentile", "mse"])
def test_cpu_made_cache_is_used_without_get_batch(workdir: Path, algorithm: str) -> None:
    """The headline workflow: scales from a CPU, header for calibration.trt_version (10.16.1),
    built by whatever TensorRT 10.x the container runs."""
    cache = workdir / f"{algorithm}.cache"
    config = demo_variant(
        workdir, "int8", algorithm, calibration={"algorithm": algorithm, "cache": str(cache)}
    )
    cli("calibrate", str(config.source))
    written = cache.read_bytes()
    outcome = build(config, force=True)
    report = json.loads(outcome.report.read_text())
    assert report["calibration"]["batches"] == 0 and report["calibration"]["cache_reused"]
    assert cache.read_bytes() == written  # the file keeps its header and provenance
    assert read_manifest(cache).scales_by.startswith("trtq ")


@weakly_typed
def test_minmax_calibrator_writes_a_minmax_cache(workdir: Path) -> None:
    cache = workdir / "minmax.cache"
    config = demo_variant(workdir, "int8", "minmax", calibration={"algorithm": "minmax", "cache": str(cache)})
    outcome = build(config, force=True)
    report = json.loads(outcome.report.read_text())
    assert report["calibration"]["batches"] == len(calibration_entries(config))
    parsed = read_cache(cache)
    assert parsed.algorithm == "MinMaxCalibration" and parsed.version == encode_version(trt_version())
    assert read_manifest(cache).scales_by == f"TensorRT {trt_version()} (MinMaxCalibration)"


@pytest.mark.parametrize("precision", BENCHED)
def test_timing_cache_is_reused_across_two_builds(
    workdir: Path, capfd: pytest.CaptureFixture[str], precision: str
) -> None:
    timing = workdir / f"timing-{precision}.cache"
    first = benched(workdir, precision, f"timed-a-{precision}", build={"timing_cache": str(timing)})
    build(first, force=True)
    assert timing.stat().st_size > 0
    second = benched(workdir, precision, f"timed-b-{precision}", build={"timing_cache": str(timing)})
    build(second, force=True)
    assert "rejected the timing cache" not in capfd.readouterr().err  # set_timing_cache accepted it
    assert timing.stat().st_size > 0
    assert not list(workdir.glob(f"timing-{precision}.*.cache"))  # accepted: saved in place, not beside it


@pytest.mark.parametrize("precision", BENCHED)
def test_bench_with_cuda_graph(workdir: Path, precision: str) -> None:
    config = benched(
        workdir,
        precision,
        f"graph-{precision}",
        benchmark={"cuda_graph": True, "warmup_ms": 50, "duration_s": 0.3, "iterations": 10},
    )
    build(config)
    out = workdir / f"bench-graph-{precision}.json"
    cli("bench", str(config.source), "--json", str(out))
    (result,) = json.loads(out.read_text())
    assert result["backend"] == "tensorrt" and result["queries"] >= 10
    assert result["metrics_ms"]["compute"]["median"] > 0
    assert not [w for w in result["warnings"] if "CUDA graph capture failed" in w]  # no fallback

    # The replayed graph computes what a plain enqueue computes on the same input.
    backend = TensorRTBackend(config.resolve(config.spec.build.engine or ""), config, True, False)
    assert backend.uses_cuda_graph and backend.warnings == []
    backend.query()
    replayed = [np.asarray(host, dtype=np.float32).copy() for host, _ in backend._outputs]
    enqueued = backend.infer(dict.fromkeys(backend.input_shapes, np.asarray(backend._inputs[0][0]).copy()))
    for graph_output, plain_output in zip(replayed, enqueued.values(), strict=True):
        np.testing.assert_allclose(graph_output, plain_output, rtol=1e-3, atol=1e-3)


def test_a_corrupt_timing_cache_is_replaced(workdir: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """create_timing_cache returns None for bytes it cannot read (or set_timing_cache rejects them):
    the build still succeeds, says so, and saves a cache TensorRT can read."""
    timing = workdir / "corrupt-timing.cache"
    timing.write_bytes(b"not a timing cache")
    build(demo_variant(workdir, "fp32", "corrupt-timed", build={"timing_cache": str(timing)}), force=True)
    err = capfd.readouterr().err
    assert "could not read the timing cache" in err or "rejected the timing cache" in err
    saved = [p for p in workdir.glob("corrupt-timing*.cache") if p.read_bytes() != b"not a timing cache"]
    assert saved and saved[0].stat().st_size > 0


@weakly_typed
def test_a_cache_tensorrt_discards_is_replaced_by_its_recalibration(workdir: Path) -> None:
    """However TensorRT treats a handed-over cache, the result is consistent: used as is (no batch,
    file unchanged), or discarded and recalibrated (every batch, the file replaced with TensorRT's)."""
    cache = workdir / "foreign.cache"
    config = demo_variant(workdir, "int8", "foreign", calibration={"cache": str(cache)})
    cli("calibrate", str(config.source))  # trtq's entropy scales, header for 10.16.1
    written = cache.read_bytes()
    report = json.loads(build(config, force=True).report.read_text())["calibration"]
    if report["cache_reused"]:
        assert report["batches"] == 0 and cache.read_bytes() == written
    else:
        assert report["batches"] == len(calibration_entries(config)) // config.batch_size
        assert read_manifest(cache).scales_by.startswith("TensorRT ")


@weakly_typed
def test_layer_precisions_keep_a_layer_in_fp32(tiny: TinyWorkspace) -> None:
    from trtq.doctor.checks import build_engine

    build_engine(tiny, "fp16-conv1-fp32", "fp16", build={"layer_precisions": {"conv1*": "fp32"}})
    report = json.loads((tiny.folder / "fp16-conv1-fp32.engine.build.json").read_text())
    assert report["layers"]


def test_runtime_shape_other_than_opt(tiny: TinyWorkspace) -> None:
    """An engine built for batch 1..4 (opt 2) runs batch 4 (a config with that fixed shape) and
    matches ONNX Runtime there."""
    from trtq.compare.models import compare_models
    from trtq.doctor.checks import build_engine
    from trtq.model.runner import OnnxRunner
    from trtq.trt.builder import engine_path

    build_engine(tiny, "fp32-shapes", "fp32")
    at_max = tiny.config("fp32-max", "fp32", inputs=[{"name": "x", "shape": [4, 3, 16, 16]}])
    backend = TensorRTBackend(engine_path(tiny.configs["fp32-shapes"]), at_max, False, False)
    batch = tiny.first_batch(at_max).data
    assert batch.shape == (4, 3, 16, 16) and backend.input_shapes["x"] == [4, 3, 16, 16]
    engine = backend.infer({"x": batch})
    reference = OnnxRunner(tiny.model_path).infer({"x": batch}, ["y"])
    assert engine["y"].shape == (4, 4)
    assert compare_models(reference, engine)[0].cosine > 0.9999


def with_bf16_io(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with a BF16 input ``x_bf16`` cast to its float ``x``, and its float ``y`` cast to a
    BF16 output ``y_bf16``: an engine whose I/O is bfloat16 (strongly typed, so built as it is)."""
    graph = model.graph
    (source,), (result,) = graph.input, graph.output
    graph.node.insert(0, onnx.helper.make_node("Cast", ["x_bf16"], ["x"], to=onnx.TensorProto.FLOAT))
    graph.node.append(onnx.helper.make_node("Cast", ["y"], ["y_bf16"], to=onnx.TensorProto.BFLOAT16))
    shape = [d.dim_param or d.dim_value for d in source.type.tensor_type.shape.dim]
    out_shape = [d.dim_param or d.dim_value for d in result.type.tensor_type.shape.dim]
    graph.input.pop()
    graph.output.pop()
    graph.input.append(onnx.helper.make_tensor_value_info("x_bf16", onnx.TensorProto.BFLOAT16, shape))
    graph.output.append(onnx.helper.make_tensor_value_info("y_bf16", onnx.TensorProto.BFLOAT16, out_shape))
    return model


def test_bf16_engine_io_matches_onnxruntime(tiny: TinyWorkspace) -> None:
    """BF16 inputs are fed as bfloat16 words and BF16 outputs read back as float32 (the runner's
    bit conversions), on a strongly typed engine from the tiny Q/DQ model with BF16 I/O. Skipped on
    a GPU below compute capability 8.0, where TensorRT has no BF16."""
    from trtq.compare.models import compare_models
    from trtq.doctor.checks import build_engine, qdq_build
    from trtq.model.runner import OnnxRunner
    from trtq.trt.builder import engine_path
    from trtq.trt.device import bf16_unsupported

    if (reason := bf16_unsupported()) is not None:
        pytest.skip(reason)
    qdq_build(tiny)
    bf16_model = tiny.folder / "tiny.qdq.bf16.onnx"
    onnx.save(with_bf16_io(onnx.load(str(tiny.folder / "tiny.qdq.onnx"))), str(bf16_model))
    profile = {"name": "x_bf16", "min": [1, 3, 16, 16], "opt": [2, 3, 16, 16], "max": [4, 3, 16, 16]}
    build_engine(tiny, "bf16-io", "int8-qdq", inputs=[profile], model={"path": bf16_model.name})
    config = tiny.configs["bf16-io"]
    backend = TensorRTBackend(engine_path(config), config, False, False)
    assert backend._input_bf16 == [True] and backend._output_bf16 == [True]
    batch = tiny.first_batch(config).data
    engine = {"y": backend.infer({"x_bf16": batch})["y_bf16"]}
    reference = OnnxRunner(tiny.model_path).infer({"x": batch}, ["y"])
    assert compare_models(reference, engine)[0].cosine > 0.98
