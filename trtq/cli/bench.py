"""``trtq bench TARGET...``: trtexec-style timing of several models or engines, side by side."""

from __future__ import annotations

from dataclasses import replace
from enum import Enum
from pathlib import Path
from typing import Annotated

import numpy as np
import numpy.typing as npt
import onnx
import typer

from trtq.cli import preflight
from trtq.cli.console import LiteralTable, command_console
from trtq.cli.errors import warn
from trtq.cli.options import within
from trtq.config import LoadedConfig, load_config
from trtq.data.from_config import batch_source, calibration_entries
from trtq.errors import TrtqError
from trtq.runner.onnxruntime_backend import OnnxRuntimeBackend
from trtq.runner.timing import Backend, BenchResult, TimingSettings, analyse, run_timed

console = command_console()
_CONFIG_SUFFIXES = (".yaml", ".yml")


class BackendName(str, Enum):
    onnxruntime = "onnxruntime"
    tensorrt = "tensorrt"


def bench_command(
    targets: Annotated[list[Path], typer.Argument(help="YAML configs, .onnx models or .engine files")],
    backend: Annotated[BackendName | None, typer.Option(help="default from the config")] = None,
    warmup_ms: Annotated[
        float | None,
        typer.Option(
            callback=within(0, 3_600_000), help="time-based warm-up, at most an hour (trtexec: 200)"
        ),
    ] = None,
    duration_s: Annotated[
        float | None,
        typer.Option(
            callback=within(0, 86_400, above_low=True),
            help="minimum seconds measured, at most a day (trtexec: 3)",
        ),
    ] = None,
    iterations: Annotated[
        int | None, typer.Option(min=1, help="minimum queries measured (trtexec: 10)")
    ] = None,
    shape: Annotated[list[str] | None, typer.Option(help="NAME:1x3x224x224 for a bare model's input")] = None,
    json_path: Annotated[
        Path | None,
        typer.Option(
            "--json",
            help="results of every target; default: out/CONFIG_NAME.bench.json beside the first config, "
            "else out/bench.json",
        ),
    ] = None,
) -> None:
    """Measure throughput and latency percentiles with trtexec's loop and statistics."""
    configs = {t: load_config(t) if t.suffix in _CONFIG_SUFFIXES else None for t in targets}
    if json_path is None:
        first = next((c for c in configs.values() if c is not None), None)
        json_path = first.default_output("bench.json") if first is not None else Path("out/bench.json")
    out = preflight.bench(configs, json_path)
    shapes = _parse_shapes(shape or [])
    if shapes and all(config is not None for config in configs.values()):
        raise TrtqError(
            "--shape is for bare ONNX models; a config is timed at its calibration (opt) shape: "
            "change inputs in the config"
        )
    results: list[BenchResult] = []
    for target, config in configs.items():
        section = config.spec.benchmark if config is not None else None
        settings = TimingSettings(
            warmup_ms=warmup_ms if warmup_ms is not None else (section.warmup_ms if section else 200.0),
            duration_s=duration_s if duration_s is not None else (section.duration_s if section else 3.0),
            iterations=iterations if iterations is not None else (section.iterations if section else 10),
            percentiles=tuple(section.percentiles) if section else (90.0, 95.0, 99.0),
        )
        chosen = backend.value if backend else (section.backend if section else None)
        runner = _backend(target, config, chosen, shapes)
        with console.status(f"timing {target.name} on {runner.name}"):
            trace = run_timed(runner, settings)
        results.append(analyse(str(target), runner, trace, settings.percentiles))
    _print(results)
    out.write_json(json_path, [r.to_json() for r in results])
    console.print(f"json     {json_path}")


def _backend(
    target: Path, config: LoadedConfig | None, name: str | None, shapes: dict[str, list[int]]
) -> Backend:
    if target.suffix == ".engine" or name == "tensorrt":
        # TensorRT is imported only when asked for; without it, reported_errors says it is needed
        from trtq.trt.builder import engine_path
        from trtq.trt.runner import tensorrt_backend

        return tensorrt_backend(target if config is None else engine_path(config), config)
    if name not in (None, "onnxruntime"):
        raise TrtqError(f"--backend {name!r}: choose onnxruntime or tensorrt")
    if config is not None:
        return OnnxRuntimeBackend(config.model_path, {config.image_input.name: first_batch(config)})
    return OnnxRuntimeBackend(target, random_inputs(target, shapes))


def first_batch(config: LoadedConfig) -> npt.NDArray[np.float32]:
    """Time on real data: the first calibration images, at the opt shape TensorRT's bench times too
    (calibration.batch_size may calibrate at another batch)."""
    size = config.image_input.opt_shape[0]
    source = replace(batch_source(config, calibration_entries(config)[:size]), batch_size=size)
    for batch in source:
        return batch.data
    raise TrtqError(f"{config.source}: no calibration batch to time with")


def random_inputs(model_path: Path, shapes: dict[str, list[int]]) -> dict[str, npt.NDArray[np.float32]]:
    """Uniform [-1, 1] inputs (as trtexec uses) for a model given without a config."""
    if not model_path.is_file():
        raise TrtqError(f"{model_path}: bench target not found")
    try:
        model = onnx.load(str(model_path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, ValueError, ... for a file that is not ONNX
        raise TrtqError(
            f"{model_path}: not an ONNX model ({type(exc).__name__}); bench takes YAML configs, "
            ".onnx models and .engine files"
        ) from None
    initializers = {i.name for i in model.graph.initializer}
    graph_inputs = [i for i in model.graph.input if i.name not in initializers]
    if not graph_inputs:
        raise TrtqError(f"{model_path}: the model has no inputs to feed")
    unknown = sorted(set(shapes) - {i.name for i in graph_inputs})
    if unknown:
        raise TrtqError(
            f"--shape {unknown[0]}: {model_path} has no such input; its inputs are "
            + ", ".join(i.name for i in graph_inputs)
        )
    rng = np.random.default_rng(0)
    inputs = {}
    for graph_input in graph_inputs:
        name = graph_input.name
        if graph_input.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
            raise TrtqError(f"{model_path}: input '{name}' is not float32; bench a YAML config instead")
        dims = [d.dim_value for d in graph_input.type.tensor_type.shape.dim]
        shape = shapes.get(name, dims)
        if not shape or any(d <= 0 for d in shape):
            raise TrtqError(
                f"{model_path}: input '{name}' has dynamic dims {dims}; "
                f"give --shape {name}:1x3x224x224 or bench a YAML config"
            )
        fixed = [d if d > 0 else "?" for d in dims]
        if dims and (
            len(shape) != len(dims) or any(d > 0 and d != s for d, s in zip(dims, shape, strict=True))
        ):
            raise TrtqError(
                f"--shape {name}:{'x'.join(map(str, shape))}: the model's input has shape {fixed}"
            )
        inputs[name] = rng.uniform(-1, 1, size=shape).astype(np.float32)
    return inputs


def _parse_shapes(specs: list[str]) -> dict[str, list[int]]:
    shapes: dict[str, list[int]] = {}
    for spec in specs:
        name, _, dims = spec.rpartition(":")
        if name in shapes:
            raise TrtqError(f"--shape {spec!r}: input {name!r} already has a --shape; give one per input")
        try:
            shapes[name] = [int(d) for d in dims.split("x")]
        except ValueError:
            raise TrtqError(f"--shape {spec!r}: expected NAME:1x3x224x224") from None
        if not name or any(d <= 0 for d in shapes[name]):
            raise TrtqError(f"--shape {spec!r}: expected NAME:1x3x224x224 (positive dims)")
    return shapes


def _print(results: list[BenchResult]) -> None:
    table = LiteralTable("trtexec-style timing (ms unless stated)")
    table.add_column("", overflow="fold")
    for result in results:
        table.add_column(f"{Path(result.target).name}\n{result.backend}", justify="right", no_wrap=True)
    table.add_row(
        "queries (warm-up)", *[f"{len(r.trace.queries)} ({r.trace.warmup_queries})" for r in results]
    )
    table.add_row("throughput qps", *[f"{r.throughput_qps:.2f}" for r in results])
    table.add_row("images/s", *[f"{r.throughput_qps * r.batch_size:.2f}" for r in results])
    percentiles = sorted({p for r in results for p in r.metrics["latency"].percentiles})
    has_transfers = any("h2d" in r.metrics for r in results)
    for metric in ("latency", "compute", "h2d", "d2h", "enqueue"):
        if not any(metric in r.metrics for r in results) or (metric == "compute" and not has_transfers):
            continue  # without transfers (ONNX Runtime on CPU) compute equals latency
        for label in ("min", "mean", "median", *[f"p{p:g}" for p in percentiles], "max"):
            table.add_row(f"{metric} {label}", *[_cell(r, metric, label) for r in results])
    console.print(table)
    for result in results:
        for warning in result.warnings:
            warn(f"{Path(result.target).name}: {warning}")


def _cell(result: BenchResult, metric: str, label: str) -> str:
    summary = result.metrics.get(metric)
    if summary is None:
        return "-"
    values = {"min": summary.minimum, "mean": summary.mean, "median": summary.median, "max": summary.maximum}
    values.update({f"p{p:g}": v for p, v in summary.percentiles.items()})
    return f"{values[label]:.3f}" if label in values else "-"
