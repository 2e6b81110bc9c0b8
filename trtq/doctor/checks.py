"""The end-to-end checks on the tiny model: one function per check, shared by ``trtq doctor`` and
tests/test_gpu.py. Each returns what it saw and raises CheckFailed (or the TrtqError of the step
that failed) when something that should work does not."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import numpy as np

from trtq.calibrate.pipeline import calibrate
from trtq.compare.models import compare_models
from trtq.config import Algorithm
from trtq.doctor.results import Check, CheckFailed
from trtq.doctor.tiny import INPUT, TinyWorkspace
from trtq.fileio import atomic_write_bytes
from trtq.model.runner import OnnxRunner
from trtq.qdq.scales import cache_scales, qdq_from_scales

WEAKLY_TYPED_REMOVED = "TensorRT 11 removed weak typing (no FP16/INT8 builder flags, no INT8 calibrators)"
MIN_COSINE = {"fp32": 0.9999, "fp16": 0.999, "int8": 0.98, "int8-qdq": 0.98}
"""Engine output vs the FP32 model in ONNX Runtime; INT8 on the tiny model keeps far more than 0.98."""


def cpu_calibration(ws: TinyWorkspace) -> str:
    """trtq's own calibration API on the CPU: the path that needs no GPU."""
    config = ws.config("cpu", "int8")
    run, outputs = calibrate(config)
    scales = run.scales(outputs.algorithm)
    if not scales or not all(np.isfinite(s) and s > 0 for s in scales.values()):
        raise CheckFailed(f"calibration gave unusable scales: {scales}")
    return f"{len(scales)} tensors calibrated into {outputs.cache.name}"


def build_engine(
    ws: TinyWorkspace,
    name: str,
    precision: str,
    inputs: list[dict[str, Any]] | None = None,
    **sections: dict[str, Any],
) -> str:
    """``trtq build`` of config ``name``; a calibration it reports must be real (an int8 build of a
    Q/DQ model reports none: TensorRT calls no calibrator there)."""
    from trtq.trt.builder import build

    config = ws.config(name, precision, inputs, **sections)
    outcome = build(config, force=True)
    report = json.loads(outcome.report.read_text())
    if not report["layers"]:
        raise CheckFailed("the build report lists no layers")
    calibration = report["calibration"]  # None: no calibrator (int8 on a Q/DQ model quantizes explicitly)
    if calibration is not None and calibration["batches"] == 0 and not calibration["cache_reused"]:
        raise CheckFailed("TensorRT calibrated on no batch and reused no cache")
    what = f"{outcome.engine.stat().st_size} bytes, {len(report['layers'])} layers"
    if calibration is not None:
        what += f", {calibration['batches']} calibration batches"
    return what


def calibrator_build(ws: TinyWorkspace, algorithm: Algorithm) -> str:
    """int8 with TensorRT's own calibrator (entropy or minmax): it asks for every batch and writes
    a cache whose header names the running TensorRT."""
    from trtq.cache import read_cache
    from trtq.cache.headers import header_for
    from trtq.trt.version import trt_version

    name = f"int8-{algorithm}"
    detail = build_engine(ws, name, "int8", calibration={"algorithm": algorithm})
    config = ws.configs[name]
    cache = read_cache(config.cache_path)
    if cache.trt_version != trt_version() or cache.algorithm != header_for(algorithm):
        raise CheckFailed(
            f"{config.cache_path.name} says TensorRT {cache.trt_version} {cache.algorithm}, expected "
            f"TensorRT {trt_version()} {header_for(algorithm)}"
        )
    return detail


def other_version(running: str) -> str:
    return "10.8.0" if running != "10.8.0" else "10.9.0"


def cpu_cache_build(ws: TinyWorkspace) -> str:
    """The headline workflow: scales from ``trtq calibrate`` (percentile, a CPU-only algorithm) with a
    header for another TensorRT version, used by this TensorRT without asking for a batch."""
    from trtq.trt.builder import build
    from trtq.trt.version import trt_version

    target = other_version(trt_version())
    config = ws.config(
        "int8-cpu-cache", "int8", calibration={"algorithm": "percentile", "trt_version": target}
    )
    calibrate(config)
    written = config.cache_path.read_bytes()
    report = json.loads(build(config, force=True).report.read_text())
    calibration = report["calibration"]
    if calibration["batches"] or not calibration["cache_reused"]:
        raise CheckFailed(f"TensorRT did not take the CPU-made cache as it is: {calibration}")
    if config.cache_path.read_bytes() != written:
        raise CheckFailed(f"{config.cache_path.name} was rewritten by the build")
    return f"cache for TensorRT {target} used by TensorRT {trt_version()}, no batch asked for"


def qdq_build(ws: TinyWorkspace) -> str:
    """int8-qdq from the model ``trtq qdq`` makes out of a CPU-made cache: INT8 layers result."""
    source = ws.config("qdq-source", "int8")
    calibrate(source)
    _, scales = cache_scales(source, None)
    qdq_model = ws.folder / "tiny.qdq.onnx"
    atomic_write_bytes(qdq_model, qdq_from_scales(source, scales).model.SerializeToString())
    detail = build_engine(ws, "int8-qdq", "int8-qdq", model={"path": qdq_model.name})
    report = json.loads((ws.folder / "int8-qdq.engine.build.json").read_text())
    types = [t.lower() for layer in report["layers"] for t in layer["outputs"]]
    if not any("int8" in t for t in types):
        raise CheckFailed(f"no layer of the Q/DQ engine outputs INT8: {sorted(set(types))}")
    return detail


def engine_matches_onnxruntime(ws: TinyWorkspace, name: str) -> str:
    """The engine of config ``name`` on one batch of images vs the FP32 model in ONNX Runtime."""
    from trtq.trt.builder import engine_path
    from trtq.trt.runner import tensorrt_backend

    config = ws.configs[name]
    batch = ws.first_batch(config).data
    engine = tensorrt_backend(engine_path(config), config).infer({INPUT: batch})
    reference = OnnxRunner(ws.model_path).infer({INPUT: batch})
    worst = min(compare_models(reference, engine), key=lambda metrics: metrics.cosine)
    threshold = MIN_COSINE[config.spec.build.precision]
    if not worst.cosine >= threshold:
        raise CheckFailed(f"output '{worst.output}': cosine {worst.cosine:.6f} < {threshold}")
    return f"cosine {worst.cosine:.6f} (>= {threshold})"


def bench_engine(ws: TinyWorkspace, name: str, cuda_graph: bool) -> str:
    """A short ``trtq bench`` of config ``name``'s engine; with CUDA graphs, no fallback allowed."""
    from trtq.runner.timing import TimingSettings, analyse, run_timed
    from trtq.trt.builder import engine_path
    from trtq.trt.runner import TensorRTBackend

    config = ws.configs[name]
    backend = TensorRTBackend(engine_path(config), config, cuda_graph=cuda_graph, spin_wait=False)
    if cuda_graph and not backend.uses_cuda_graph:
        raise CheckFailed(f"no CUDA graph: {'; '.join(backend.warnings)}")
    trace = run_timed(backend, TimingSettings(warmup_ms=20, duration_s=0.2, iterations=10))
    result = analyse(name, backend, trace, (99.0,))
    latency = result.metrics["latency"].median
    if not (len(trace.queries) >= 10 and result.metrics["compute"].median > 0):
        raise CheckFailed(
            f"{len(trace.queries)} queries, median compute {result.metrics['compute'].median} ms"
        )
    return f"{len(trace.queries)} queries, median latency {latency:.3f} ms"


def timing_cache_reuse(ws: TinyWorkspace) -> str:
    """Two fp32 builds sharing a timing cache: the second must accept the first's (saved in place,
    nothing beside it for this GPU)."""
    from trtq.trt.builder import per_gpu_path
    from trtq.trt.device import gpu_name

    timing = ws.folder / "timing.cache"
    timing.unlink(missing_ok=True)
    build_engine(ws, "timed-a", "fp32", build={"timing_cache": timing.name})
    first = timing.stat().st_size if timing.is_file() else 0
    if first == 0:
        raise CheckFailed("the first build wrote no timing cache")
    build_engine(ws, "timed-b", "fp32", build={"timing_cache": timing.name})
    beside = per_gpu_path(timing, gpu_name())
    if beside.exists():
        raise CheckFailed(f"TensorRT rejected the timing cache it wrote itself (saved {beside.name})")
    return f"{first} bytes written, accepted by the second build"


def gpu_checks(trt_major: int, cuda_runtime_missing: str | None = None) -> list[Check]:
    """Every GPU check for this TensorRT major version, in order (later ones use earlier engines).
    ``cuda_runtime_missing``: why no libcudart was found; the CUDA-graph bench checks are then
    skipped with it (bench times plain enqueues without one), not failed."""
    weak = WEAKLY_TYPED_REMOVED if trt_major >= 11 else None
    no_graphs = f"no CUDA runtime (libcudart) found: {cuda_runtime_missing}" if cuda_runtime_missing else None
    builds = {
        "fp32": Check("build fp32", partial(build_engine, name="fp32", precision="fp32")),
        "fp16": Check("build fp16", partial(build_engine, name="fp16", precision="fp16"), skip=weak),
        "int8-entropy": Check(
            "build int8, entropy calibrator", partial(calibrator_build, algorithm="entropy"), skip=weak
        ),
        "int8-minmax": Check(
            "build int8, minmax calibrator", partial(calibrator_build, algorithm="minmax"), skip=weak
        ),
        "int8-cpu-cache": Check(
            "build int8 from a CPU cache for another TensorRT", cpu_cache_build, skip=weak
        ),
        "int8-qdq": Check("build int8-qdq from trtq qdq", qdq_build),
    }
    checks = list(builds.values())
    for engine, built in builds.items():
        checks.append(
            Check(
                f"run {engine} vs ONNX Runtime",
                partial(engine_matches_onnxruntime, name=engine),
                needs=(built.name,),
                skip=built.skip,
            )
        )
    for engine in ("fp32", "int8-qdq"):
        for graph in (False, True):
            checks.append(
                Check(
                    f"bench {engine} {'with' if graph else 'without'} CUDA graph",
                    partial(bench_engine, name=engine, cuda_graph=graph),
                    needs=(builds[engine].name,),
                    skip=no_graphs if graph else None,
                )
            )
    checks.append(Check("timing cache reused", timing_cache_reuse))
    return checks
