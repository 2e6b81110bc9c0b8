"""``trtq build``: one config's ONNX model -> engine, a build report, and reuse of unchanged builds."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
import tensorrt as trt

from trtq.calibrate.auto import cache_algorithm
from trtq.config.loader import LoadedConfig, build_report_path
from trtq.config.loader import engine_path as engine_path
from trtq.config.schema import InputSpec
from trtq.errors import TrtqError
from trtq.fileio import atomic_write_bytes, atomic_write_text, sha256_file, strict_json
from trtq.trt.device import PycudaMemory, gpu_name
from trtq.trt.feed import CalibrationFeed
from trtq.trt.logger import TrtLogger, warn
from trtq.trt.version import require_supported, trt_major, trt_version

_PRECISION_TYPES = {"fp32": trt.DataType.FLOAT, "fp16": trt.DataType.HALF, "int8": trt.DataType.INT8}


@dataclass(frozen=True)
class BuildOutcome:
    engine: Path
    report: Path
    reused: bool
    seconds: float


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
    report_file = build_report_path(engine_file)
    gpu = gpu_name()
    if not force and _unchanged(engine_file, report_file, build_fingerprint(config, gpu)):
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
    calibrate = precision == "int8" and not _network_has_qdq(network)
    if precision == "int8" and not calibrate:
        warn(
            f"{config.model_path} has Q/DQ nodes: TensorRT quantizes it explicitly and calls no "
            "calibrator, so none is attached (build.precision int8-qdq builds such models strongly typed)"
        )
    builder_config = _builder_config(builder, network, config)
    # The calibrator is kept referenced here until the build is done: TensorRT calls back into it.
    feed, _calibrator = _attach_calibrator(builder, builder_config, config) if calibrate else (None, None)
    timing_cache = None
    if config.spec.build.timing_cache:
        timing_cache = attach_timing_cache(
            builder_config, config.resolve(config.spec.build.timing_cache), gpu
        )

    serialized = builder.build_serialized_network(network, builder_config)
    if feed is not None:
        feed.check()
    if serialized is None:
        detail = f": {logger.errors[-1]}" if logger.errors else ""
        raise TrtqError(f"TensorRT could not build {config.model_path.name} ({precision}){detail}")
    engine_bytes = bytes(memoryview(serialized))
    layers = layer_precisions(engine_bytes, logger, engine_file)  # before writing: no engine without a report
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
        "layers": layers,
    }
    atomic_write_text(report_file, strict_json(report))
    return BuildOutcome(engine_file, report_file, reused=False, seconds=seconds)


def _unchanged(engine_file: Path, report_file: Path, fingerprint: str) -> bool:
    """The engine on disk was built from these inputs (its report says so, and it is that engine)."""
    if not (engine_file.is_file() and report_file.is_file()):
        return False
    previous = json.loads(report_file.read_text())
    return bool(
        previous.get("build_fingerprint") == fingerprint
        and previous.get("engine_sha256") == sha256_file(engine_file)
    )


def _builder_config(
    builder: trt.Builder, network: trt.INetworkDefinition, config: LoadedConfig
) -> trt.IBuilderConfig:
    """The build section as builder flags: profiling detail, workspace, level, the optimization
    profile, FP16/INT8 and per-layer precisions."""
    builder_config = builder.create_builder_config()
    builder_config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    build = config.spec.build
    if build.workspace_mib is not None:
        builder_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, build.workspace_mib << 20)
    builder_config.builder_optimization_level = build.optimization_level
    _add_profile(builder, builder_config, config)
    if build.precision in ("fp16", "int8"):
        builder_config.set_flag(trt.BuilderFlag.FP16)
    if build.precision == "int8":
        builder_config.set_flag(trt.BuilderFlag.INT8)
    if build.layer_precisions:
        _apply_layer_precisions(network, build.layer_precisions)
        builder_config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
    return builder_config


def _attach_calibrator(
    builder: trt.Builder, builder_config: trt.IBuilderConfig, config: LoadedConfig
) -> tuple[CalibrationFeed, object]:
    """trtq's calibrator for the config's algorithm, at the calibration shape."""
    # Imported here: the calibrator base classes exist only in TensorRT <= 10 (refused above on 11).
    from trtq.trt.calibrators import make_calibrator

    feed = CalibrationFeed(config, PycudaMemory(), cache_algorithm(config), trt_version())
    calibrator = make_calibrator(feed)
    builder_config.int8_calibrator = calibrator
    if not builder_config.set_calibration_profile(_calibration_profile(builder, config)):
        raise TrtqError(
            f"TensorRT rejected the calibration profile (every input at its calibration shape: "
            f"{_shapes_text(config, calibration=True)}); check inputs[].opt or shape in {config.source}"
        )
    return feed, calibrator


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
            warn(
                f"TensorRT could not read the timing cache {candidate} (truncated or corrupt?); "
                "starting a fresh one, which will replace it"
            )
            return AttachedTimingCache(_fresh_timing_cache(builder_config, candidate), candidate)
        if builder_config.set_timing_cache(cache, False):
            return AttachedTimingCache(cache, candidate)
        if index == 0:
            warn(
                f"TensorRT rejected the timing cache {candidate} (made on another device or TensorRT "
                f"version?); it is kept as it is, and this GPU's timings go to {candidates[1]}"
            )
    target = candidates[1]
    if target.is_file():
        warn(f"TensorRT rejected the timing cache {target} too; starting a fresh one, which will replace it")
    return AttachedTimingCache(_fresh_timing_cache(builder_config, target), target)


def _fresh_timing_cache(builder_config: trt.IBuilderConfig, path: Path) -> trt.ITimingCache:
    cache: trt.ITimingCache | None = builder_config.create_timing_cache(b"")
    if cache is None or not builder_config.set_timing_cache(cache, False):
        raise TrtqError(f"TensorRT rejected even an empty timing cache for {path}")
    return cache


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


def _network_has_qdq(network: trt.INetworkDefinition) -> bool:
    """Explicit quantization: TensorRT then never calls a calibrator (Polygraphy attaches one only
    when no layer is a QUANTIZE or DEQUANTIZE layer, backend/trt/config.py)."""
    qdq = (trt.LayerType.QUANTIZE, trt.LayerType.DEQUANTIZE)
    return any(network.get_layer(index).type in qdq for index in range(network.num_layers))


def _profile_shapes(spec: InputSpec) -> tuple[list[int], list[int], list[int]]:
    if spec.shape is not None:
        return spec.shape, spec.shape, spec.shape
    return spec.min or [], spec.opt or [], spec.max or []


def _calibrated(config: LoadedConfig, spec: InputSpec) -> tuple[int, ...]:
    """The shape calibration feeds an input: the image input's with calibration.batch_size's batch."""
    return config.calibration_shape if spec.name == config.image_input.name else spec.opt_shape


def _shapes_text(config: LoadedConfig, calibration: bool = False) -> str:
    if calibration:
        return ", ".join(f"'{spec.name}' {list(_calibrated(config, spec))}" for spec in config.spec.inputs)
    return ", ".join(
        "'{}' min {} opt {} max {}".format(spec.name, *_profile_shapes(spec)) for spec in config.spec.inputs
    )


def _add_profile(builder: trt.Builder, builder_config: trt.IBuilderConfig, config: LoadedConfig) -> None:
    """``add_optimization_profile`` returns the profile's index, or -1 for an invalid profile; it
    does not raise. The binding documents the profile as one that "must satisfy ``bool(profile) ==
    True``" (pyCoreDoc.h), i.e. ``IOptimizationProfile::isValid``: a partial check that each input
    given has min, opt and max set, of one rank, with min <= opt <= max. Whether the names are the
    network's inputs is checked only when the engine is built."""
    profile = builder.create_optimization_profile()
    for spec in config.spec.inputs:
        low, mid, high = _profile_shapes(spec)
        profile.set_shape(spec.name, trt.Dims(low), trt.Dims(mid), trt.Dims(high))
    if builder_config.add_optimization_profile(profile) < 0:
        raise TrtqError(
            f"TensorRT rejected the optimization profile ({_shapes_text(config)}): it takes only a "
            f"profile with bool(profile) true, where every input given has min, opt and max set, of "
            f"one rank, with min <= opt <= max; check inputs[] in {config.source} (an input name "
            f"{config.model_path.name} does not have is not checked here but when the engine is built)"
        )


def _calibration_profile(builder: trt.Builder, config: LoadedConfig) -> trt.IOptimizationProfile:
    """Calibration runs at one shape (the opt shape, with calibration.batch_size's batch): a profile
    whose min, opt and max are all that shape."""
    profile = builder.create_optimization_profile()
    for spec in config.spec.inputs:
        shape = trt.Dims(list(_calibrated(config, spec)))
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


def layer_precisions(engine_bytes: bytes, logger: TrtLogger, engine_file: Path) -> list[dict[str, Any]]:
    """Per-layer output types from the engine inspector (needs ProfilingVerbosity.DETAILED).

    ``deserialize_cuda_engine`` returns None (it does not raise) for bytes it cannot load."""
    runtime = trt.Runtime(logger)
    engine: trt.ICudaEngine | None = runtime.deserialize_cuda_engine(engine_bytes)
    if engine is None:
        detail = f": {logger.errors[-1]}" if logger.errors else ""
        raise TrtqError(
            f"TensorRT {trt.__version__} built {engine_file.name} but cannot load it back to list its "
            f"layers{detail}; the engine was not written"
        )
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
