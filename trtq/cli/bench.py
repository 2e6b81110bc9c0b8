"""``trtq bench TARGET...``: trtexec-style timing of several models or engines, side by side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import numpy.typing as npt
import onnx
import typer
from rich.console import Console
from rich.table import Table

from trtq.calib.pipeline import batch_source, calibration_entries
from trtq.cli.errors import reported_errors
from trtq.cli.state import OPTIONS
from trtq.config import LoadedConfig, load_config
from trtq.errors import TrtqError
from trtq.fileio import atomic_write_text
from trtq.runner.onnxruntime_backend import OnnxRuntimeBackend
from trtq.runner.timing import Backend, BenchResult, TimingSettings, analyse, run_timed

console = Console()
_CONFIG_SUFFIXES = (".yaml", ".yml")


def bench_command(
    targets: Annotated[list[Path], typer.Argument(help="YAML configs, .onnx models or .engine files")],
    backend: Annotated[
        str | None, typer.Option(help="onnxruntime or tensorrt; default from the config")
    ] = None,
    warmup_ms: Annotated[float | None, typer.Option(help="time-based warm-up (trtexec: 200)")] = None,
    duration: Annotated[float | None, typer.Option(help="minimum seconds measured (trtexec: 3)")] = None,
    iterations: Annotated[int | None, typer.Option(help="minimum queries measured (trtexec: 10)")] = None,
    shape: Annotated[list[str] | None, typer.Option(help="NAME:1x3x224x224 for a bare model's input")] = None,
    json_path: Annotated[Path, typer.Option("--json", help="results of every target")] = Path(
        "out/bench.json"
    ),
) -> None:
    """Measure throughput and latency percentiles with trtexec's loop and statistics."""
    with reported_errors(OPTIONS.verbose):
        results: list[BenchResult] = []
        for target in targets:
            config = load_config(target) if target.suffix in _CONFIG_SUFFIXES else None
            section = config.spec.benchmark if config is not None else None
            settings = TimingSettings(
                warmup_ms=warmup_ms if warmup_ms is not None else (section.warmup_ms if section else 200.0),
                duration_s=duration if duration is not None else (section.duration_s if section else 3.0),
                iterations=iterations if iterations is not None else (section.iterations if section else 10),
                percentiles=tuple(section.percentiles) if section else (90.0, 95.0, 99.0),
            )
            chosen = backend or (section.backend if section else None)
            runner = _backend(target, config, chosen, _parse_shapes(shape or []))
            with console.status(f"timing {target.name} on {runner.name}"):
                trace = run_timed(runner, settings)
            results.append(analyse(str(target), runner, trace, settings.percentiles))
        _print(results)
        atomic_write_text(json_path, json.dumps([r.to_json() for r in results], indent=1) + "\n")
        console.print(f"json     {json_path}")


def _backend(
    target: Path, config: LoadedConfig | None, name: str | None, shapes: dict[str, list[int]]
) -> Backend:
    if target.suffix == ".engine" or name == "tensorrt":
        try:  # TensorRT is imported only when asked for
            from trtq.trt.builder import engine_path
            from trtq.trt.runner import tensorrt_backend
        except (ImportError, AttributeError) as exc:
            raise TrtqError(
                f"the tensorrt backend needs TensorRT and pycuda ({exc}); use --backend onnxruntime here, "
                "or run inside NVIDIA's TensorRT container (docker/README.md)"
            ) from None
        return tensorrt_backend(target if config is None else engine_path(config), config)
    if name not in (None, "onnxruntime"):
        raise TrtqError(f"--backend {name!r}: choose onnxruntime or tensorrt")
    if config is not None:
        return OnnxRuntimeBackend(config.model_path, {config.image_input.name: first_batch(config)})
    return OnnxRuntimeBackend(target, random_inputs(target, shapes))


def first_batch(config: LoadedConfig) -> npt.NDArray[np.float32]:
    """Time on real data: the first calibration batch, at the calibration (opt) shape."""
    for batch in batch_source(config, calibration_entries(config)[: config.batch_size]):
        return batch.data
    raise TrtqError(f"{config.source}: no calibration batch to time with")


def random_inputs(model_path: Path, shapes: dict[str, list[int]]) -> dict[str, npt.NDArray[np.float32]]:
    """Uniform [-1, 1] inputs (as trtexec uses) for a model given without a config."""
    model = onnx.load(str(model_path), load_external_data=False)
    initializers = {i.name for i in model.graph.initializer}
    rng = np.random.default_rng(0)
    inputs = {}
    for graph_input in model.graph.input:
        if graph_input.name in initializers:
            continue
        dims = [d.dim_value for d in graph_input.type.tensor_type.shape.dim]
        shape = shapes.get(graph_input.name, dims)
        if not shape or any(d <= 0 for d in shape):
            raise TrtqError(
                f"{model_path}: input '{graph_input.name}' has dynamic dims {dims}; "
                f"give --shape {graph_input.name}:1x3x224x224 or bench a YAML config"
            )
        inputs[graph_input.name] = rng.uniform(-1, 1, size=shape).astype(np.float32)
    return inputs


def _parse_shapes(specs: list[str]) -> dict[str, list[int]]:
    shapes = {}
    for spec in specs:
        name, _, dims = spec.rpartition(":")
        try:
            shapes[name] = [int(d) for d in dims.split("x")]
        except ValueError:
            raise TrtqError(f"--shape {spec!r}: expected NAME:1x3x224x224") from None
        if not name:
            raise TrtqError(f"--shape {spec!r}: expected NAME:1x3x224x224")
    return shapes


def _print(results: list[BenchResult]) -> None:
    table = Table(title="trtexec-style timing (ms unless stated)")
    table.add_column("")
    for result in results:
        table.add_column(f"{Path(result.target).name}\n{result.backend}", justify="right")
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
            console.print(f"[yellow]warning[/] {Path(result.target).name}: {warning}")


def _cell(result: BenchResult, metric: str, label: str) -> str:
    summary = result.metrics.get(metric)
    if summary is None:
        return "-"
    values = {"min": summary.minimum, "mean": summary.mean, "median": summary.median, "max": summary.maximum}
    values.update({f"p{p:g}": v for p, v in summary.percentiles.items()})
    return f"{values[label]:.3f}" if label in values else "-"
