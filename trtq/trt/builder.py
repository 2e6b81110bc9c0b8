"""``trtq build``: one config's ONNX model -> engine, a build report, and reuse of unchanged builds."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
import tensorrt as trt

from trtq.calib.auto import cache_algorithm
from trtq.config.loader import LoadedConfig
from trtq.errors import TrtqError
from trtq.fileio import atomic_write_bytes, atomic_write_text, sha256_file
from trtq.trt.device import PycudaMemory, gpu_name
from trtq.trt.feed import CalibrationFeed
from trtq.trt.logger import TrtLogger
from trtq.trt.version import require_supported, trt_major, trt_version

_PRECISION_TYPES = {"fp32": trt.DataType.FLOAT, "fp16": trt.DataType.HALF, "int8": trt.DataType.INT8}


@dataclass(frozen=True)
class BuildOutcome:
    engine: Path
    report: Path
    reused: bool
    seconds: float


def engine_path(config: LoadedConfig) -> Path:
    build = config.spec.build
    if build.engine:
        return config.resolve(build.engine)
    return config.base_dir / f"{config.source.stem}.{build.precision}.engine"


def report_path(engine: Path) -> Path:
    return engine.with_name(engine.name + ".build.json")


def build_fingerprint(config: LoadedConfig, gpu: str) -> str:
    """Everything that changes the engine: model bytes, shapes, build section, cache, TensorRT, GPU."""
    parts: dict[str, Any] = {
        "model_sha256": sha256_file(config.model_path),
        "inputs": [spec.model_dump() for spec in config.spec.inputs],
        "build": config.spec.build.model_dump(mode="json"),
        "trt_version": trt.__version__,
        "gpu": gpu,
    }
    if config.spec.build.precision == "int8":
        cache = config.cache_path
        parts["calibration"] = config.spec.calibration.model_dump(mode="json")
        parts["cache_sha256"] = sha256_file(cache) if cache.is_file() else None
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def build(config: LoadedConfig, force: bool = False, verbose: bool = False) -> BuildOutcome:
    require_supported()
    refuse_unsupported(config)
    engine_file = engine_path(config)
    report_file = report_path(engine_file)
    gpu = gpu_name()
    fingerprint = build_fingerprint(config, gpu)
    if not force and engine_file.is_file() and report_file.is_file():
        previous = json.loads(report_file.read_text())
        if previous.get("build_fingerprint") == fingerprint and previous.get("engine_sha256") == sha256_file(
            engine_file
        ):
            return BuildOutcome(engine_file, report_file, reused=True, seconds=0.0)

    started = time.perf_counter()
    logger = TrtLogger(verbose)
    precision = config.spec.build.precision
    if precision == "int8-qdq" and not has_qdq_nodes(config.model_path):
        raise TrtqError(
            f"{config.model_path}: build.precision int8-qdq needs a model with Q/DQ nodes; make one with "
            f"`trtq qdq {config.source} -o model.qdq.onnx` and point model.path at it"
        )
    builder = trt.Builder(logger)
    flags = 0
    if precision == "int8-qdq":
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    _parse_onnx(network, logger, config.model_path)
    builder_config = builder.create_builder_config()
    builder_config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    build = config.spec.build
    if build.workspace_mib is not None:
        builder_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, build.workspace_mib << 20)
    builder_config.builder_optimization_level = build.optimization_level
    _add_profile(builder, builder_config, config)

    feed: CalibrationFeed | None = None
    calibrator: object | None = None
    if precision in ("fp16", "int8"):
        builder_config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        # Imported here: the calibrator base classes exist only in TensorRT <= 10 (refused above on 11).
        from trtq.trt.calibrators import make_calibrator

        builder_config.set_flag(trt.BuilderFlag.INT8)
        feed = CalibrationFeed(config, PycudaMemory(), cache_algorithm(config), trt_version())
        calibrator = make_calibrator(feed)
        builder_config.int8_calibrator = calibrator
        builder_config.set_calibration_profile(_calibration_profile(builder, config))
    if build.layer_precisions:
        _apply_layer_precisions(network, build.layer_precisions)
        builder_config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
    timing_cache = None
    if build.timing_cache:
        timing_cache = attach_timing_cache(builder_config, config.resolve(build.timing_cache), gpu)

    serialized = builder.build_serialized_network(network, builder_config)
    if feed is not None:
        feed.check()
    if serialized is None:
        detail = f": {logger.errors[-1]}" if logger.errors else ""
        raise TrtqError(f"TensorRT could not build {config.model_path.name} ({precision}){detail}")
    engine_bytes = bytes(memoryview(serialized))
    atomic_write_bytes(engine_file, engine_bytes)
    if timing_cache is not None:
        save_timing_cache(builder_config, timing_cache)
    seconds = time.perf_counter() - started
    report = {
        "config": str(config.source),
        "engine": str(engine_file),
        "engine_sha256": sha256_file(engine_file),
        # Recomputed: an int8 build may just have written the calibration cache it depends on.
        "build_fingerprint": build_fingerprint(config, gpu),
        "precision": precision,
        "trt_version": trt.__version__,
        "gpu": gpu,
        "build_seconds": round(seconds, 2),
        "calibration": None
        if feed is None
        else {
            "batches": feed.batches_served,
            "cache_reused": feed.cache_reused,
            "cache": str(config.cache_path),
        },
        "layers": layer_precisions(engine_bytes, logger),
    }
    atomic_write_text(report_file, json.dumps(report, indent=1) + "\n")
    return BuildOutcome(engine_file, report_file, reused=False, seconds=seconds)


def refuse_unsupported(config: LoadedConfig) -> None:
    """What the running TensorRT cannot build, refused with a way out before any GPU work."""
    build = config.spec.build
    weakly_typed_removed = trt_major() >= 11
    if weakly_typed_removed and build.precision in ("fp16", "int8"):
        raise TrtqError(
            f"build.precision {build.precision}: TensorRT {trt.__version__} removed weak typing "
            "(no FP16/INT8 builder flags, no INT8 calibrators); make a Q/DQ model with `trtq qdq` "
            "and use build.precision: int8-qdq"
        )
    if build.layer_precisions and weakly_typed_removed:
        raise TrtqError(
            f"build.layer_precisions: TensorRT {trt.__version__} removed per-layer precision "
            "constraints (ILayer.precision, set_output_type, PREFER_PRECISION_CONSTRAINTS); use "
            "build.precision: int8-qdq with a model from `trtq qdq`, and keep layers in float "
            "with qdq.exclude patterns"
        )
    if build.layer_precisions and build.precision == "int8-qdq":
        raise TrtqError(
            "build.layer_precisions: a strongly typed (int8-qdq) network takes types from the model; "
            "keep layers in float with qdq.exclude patterns when making it with `trtq qdq`"
        )


@dataclass(frozen=True)
class AttachedTimingCache:
    cache: trt.ITimingCache
    save_to: Path
    """Where the build's timings go: the configured file, unless TensorRT rejected it (then a file
    beside it named for this GPU, so a cache shared by other machines is not overwritten)."""


def per_gpu_path(path: Path, gpu: str) -> Path:
    """``timing.cache`` -> ``timing.NVIDIA-A100-SXM4-40GB.cache``: one file per device beside it."""
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", gpu).strip("-") or "gpu"
    return path.with_name(f"{path.stem}.{slug}{path.suffix}")


def attach_timing_cache(builder_config: trt.IBuilderConfig, path: Path, gpu: str) -> AttachedTimingCache:
    """Load ``path`` into the build (or, when TensorRT rejects it, this GPU's file beside it).

    ``create_timing_cache`` returns None for bytes it cannot read (a truncated or corrupt file;
    NVIDIA's samples check for nullptr) and ``set_timing_cache`` returns False for a cache made on
    another device or TensorRT: either way the build warns and starts a fresh cache instead of
    timing nothing from it. A corrupt file is replaced; a rejected one is kept for the machines
    it was made on, and this GPU's timings are saved beside it."""
    candidates = [path, per_gpu_path(path, gpu)]
    for index, candidate in enumerate(candidates):
        if not candidate.is_file():
            if index == 0:
                return AttachedTimingCache(_fresh_timing_cache(builder_config, candidate), candidate)
            continue
        cache: trt.ITimingCache | None = builder_config.create_timing_cache(candidate.read_bytes())
        if cache is None:
            _warn(
                f"TensorRT could not read the timing cache {candidate} (truncated or corrupt?); "
                "starting a fresh one, which will replace it"
            )
            return AttachedTimingCache(_fresh_timing_cache(builder_config, candidate), candidate)
        if builder_config.set_timing_cache(cache, False):
            return AttachedTimingCache(cache, candidate)
        if index == 0:
            _warn(
                f"TensorRT rejected the timing cache {candidate} (made on another device or TensorRT "
                f"version?); it is kept as it is, and this GPU's timings go to {candidates[1]}"
            )
    target = candidates[1]
    if target.is_file():
        _warn(f"TensorRT rejected the timing cache {target} too; starting a fresh one, which will replace it")
    return AttachedTimingCache(_fresh_timing_cache(builder_config, target), target)


def _fresh_timing_cache(builder_config: trt.IBuilderConfig, path: Path) -> trt.ITimingCache:
    cache: trt.ITimingCache | None = builder_config.create_timing_cache(b"")
    if cache is None or not builder_config.set_timing_cache(cache, False):
        raise TrtqError(f"TensorRT rejected even an empty timing cache for {path}")
    return cache


def _warn(message: str) -> None:
    print(f"trtq: warning: {message}", file=sys.stderr, flush=True)


def save_timing_cache(builder_config: trt.IBuilderConfig, attached: AttachedTimingCache) -> None:
    """Write the build's timing cache; ``get_timing_cache`` may return None, then the attached
    cache object (which the builder updated in place) is the one to save."""
    cache: trt.ITimingCache | None = builder_config.get_timing_cache()  # None-able in the binding
    if cache is None:
        cache = attached.cache
    atomic_write_bytes(attached.save_to, bytes(memoryview(cache.serialize())))


def has_qdq_nodes(model: Path) -> bool:
    graph = onnx.load(str(model), load_external_data=False).graph
    return any(node.op_type in ("QuantizeLinear", "DequantizeLinear") for node in graph.node)


def _parse_onnx(network: trt.INetworkDefinition, logger: TrtLogger, model: Path) -> None:
    parser = trt.OnnxParser(network, logger)
    if parser.parse_from_file(str(model)):
        return
    problems = []
    for index in range(parser.num_errors):
        error = parser.get_error(index)
        problems.append(f"node '{error.node_name()}' ({error.node_operator()}): {error.desc()}")
    raise TrtqError(f"{model}: TensorRT's ONNX parser failed:\n  " + "\n  ".join(problems or ["(no detail)"]))


def _add_profile(builder: trt.Builder, builder_config: trt.IBuilderConfig, config: LoadedConfig) -> None:
    profile = builder.create_optimization_profile()
    for spec in config.spec.inputs:
        if spec.shape is not None:
            low = mid = high = spec.shape
        else:
            low, mid, high = spec.min or [], spec.opt or [], spec.max or []
        profile.set_shape(spec.name, trt.Dims(low), trt.Dims(mid), trt.Dims(high))
    builder_config.add_optimization_profile(profile)


def _calibration_profile(builder: trt.Builder, config: LoadedConfig) -> trt.IOptimizationProfile:
    """Calibration runs at the opt shape: a profile whose min, opt and max are all opt."""
    profile = builder.create_optimization_profile()
    for spec in config.spec.inputs:
        shape = trt.Dims(list(spec.calibration_shape))
        profile.set_shape(spec.name, shape, shape, shape)
    return profile


def _apply_layer_precisions(network: trt.INetworkDefinition, overrides: Mapping[str, str]) -> None:
    matched = dict.fromkeys(overrides, 0)
    for index in range(len(network)):
        layer = network.get_layer(index)
        for pattern, precision in overrides.items():
            if fnmatch.fnmatchcase(layer.name, pattern):
                layer.precision = _PRECISION_TYPES[precision]
                for output in range(layer.num_outputs):
                    layer.set_output_type(output, _PRECISION_TYPES[precision])
                matched[pattern] += 1
    unmatched = [pattern for pattern, count in matched.items() if count == 0]
    if unmatched:
        raise TrtqError(f"build.layer_precisions: no layer matches {unmatched}")


def layer_precisions(engine_bytes: bytes, logger: TrtLogger) -> list[dict[str, Any]]:
    """Per-layer output types from the engine inspector (needs ProfilingVerbosity.DETAILED)."""
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(engine_bytes)
    info = json.loads(
        engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON)
    )
    return summarize_layers(info)


def summarize_layers(info: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Name, type and output types of each layer in the inspector's JSON (TensorRT 10 or 11)."""
    layers = []
    for layer in info.get("Layers", []):
        if isinstance(layer, dict):
            outputs = layer.get("Outputs", [])
            types = sorted({tensor_type(o) for o in outputs if isinstance(o, dict)})
            layers.append(
                {"name": layer.get("Name", ""), "type": layer.get("LayerType", ""), "outputs": types}
            )
        else:
            layers.append({"name": str(layer), "type": "", "outputs": []})
    return layers


def tensor_type(tensor: Mapping[str, Any]) -> str:
    """TensorRT 10 writes one "Format/Datatype" string per tensor; TensorRT 11 splits it into
    "DataType" and "Format" (NVIDIA's 10.x -> 11.x IEngineInspector migration page)."""
    combined = tensor.get("Format/Datatype", tensor.get("Format/DataType"))
    if combined is not None:
        return str(combined)
    parts = [str(tensor[key]) for key in ("DataType", "Format") if tensor.get(key) is not None]
    return ", ".join(parts)
