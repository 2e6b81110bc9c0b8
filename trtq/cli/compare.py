"""``trtq compare CONFIG --images LIST``: FP32 vs INT8 (Q/DQ in ONNX Runtime) on held-out images."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from trtq.cli import preflight
from trtq.cli.console import LiteralTable, command_console
from trtq.cli.errors import warn
from trtq.cli.options import JsonOption
from trtq.cli.tables import add_columns, task_table
from trtq.compare.algorithms import qdq_per_algorithm
from trtq.compare.declared import check_declared_names, declared_outputs, undeclared_notes
from trtq.compare.models import HeldOutBatches, class_count, compare_models, heldout_batches, read_labels, run
from trtq.compare.outputs import Array, OutputMetrics
from trtq.compare.tasks import Agreement, agreement
from trtq.config import ALGORITHMS, Algorithm, LoadedConfig, load_config
from trtq.data.from_config import calibration_entries_if_listed
from trtq.data.overlap import overlap
from trtq.errors import TrtqError
from trtq.model.runner import OnnxRunner
from trtq.qdq.scales import cache_scales, qdq_from_scales

console = command_console()


def compare_command(
    config: Annotated[Path, typer.Argument(help="model YAML config")],
    images: Annotated[Path, typer.Option(help="held-out images: a list file or a directory")],
    labels: Annotated[Path | None, typer.Option(help="one integer class per line, in image order")] = None,
    algorithms: Annotated[
        str | None, typer.Option(help="comma-separated, or 'all': calibrate once, compare each")
    ] = None,
    cache: Annotated[Path | None, typer.Option(help="scales to use when --algorithms is not given")] = None,
    engine: Annotated[
        Path | None, typer.Option(help="also compare a TensorRT engine (needs TensorRT and a GPU)")
    ] = None,
    json_path: JsonOption = None,
) -> None:
    """Accuracy of INT8 against FP32, per output, for one cache or for every algorithm."""
    if algorithms and cache is not None:
        raise TrtqError(
            "--cache and --algorithms: --algorithms calibrates anew and would ignore the cache; "
            "give one of them"
        )
    loaded = load_config(config)
    json_path = json_path if json_path is not None else loaded.default_output("compare.json")
    out = preflight.compare(loaded, images, json_path, labels, cache, engine)
    cache_path, scales = (None, {}) if algorithms else cache_scales(loaded, cache, warn)
    batches = heldout_batches(loaded, images)  # decoded per model run: one batch in memory at a time
    shared = overlap(calibration_entries_if_listed(loaded), batches.entries)
    if shared:
        warn(
            f"{len(shared)} held-out image(s) are also calibration images, so these numbers flatter "
            f"INT8 (score on images calibration never saw); first: {shared[0]}"
        )
    count = batches.count
    if labels:
        read_labels(labels, count)  # a malformed file fails before the FP32 run
    input_name = loaded.image_input.name
    check_declared_names(loaded)
    reference = run(OnnxRunner(loaded.model_path), input_name, batches, count)
    classes = class_count(reference)
    if labels and classes is None:
        raise TrtqError(
            f"--labels {labels}: no output of {loaded.model_path.name} has a class axis (2-D, "
            "[samples, classes]) to score labels against"
        )
    truth = read_labels(labels, count, classes) if labels else None
    specs = declared_outputs(loaded, reference)
    results: dict[str, list[OutputMetrics]] = {}
    tasks: dict[str, Agreement] = {}

    def judge(label: str, outputs: dict[str, Array]) -> None:
        results[label] = compare_models(reference, outputs, truth)
        tasks[label] = agreement(specs, reference, outputs)

    if algorithms:
        chosen = _algorithms(algorithms)
        with console.status(f"calibrating once for {', '.join(chosen)}"):
            models = qdq_per_algorithm(loaded, chosen)
        for algorithm, qdq in models.items():
            judge(algorithm, run(OnnxRunner(qdq.model), input_name, batches, count))
    else:
        assert cache_path is not None
        qdq = qdq_from_scales(loaded, scales)
        judge(cache_path.name, run(OnnxRunner(qdq.model), input_name, batches, count))
    if engine is not None:
        judge(f"engine {engine.name}", _engine_outputs(engine, loaded, batches, count))
    _print(results, count)
    if specs:
        console.print(task_table(tasks, f"Task agreement with FP32 on {count} held-out images"))
    for note in undeclared_notes(loaded, reference):
        console.print(f"note: {note}")
    payload = {
        "config": str(config),
        "images": str(images),
        "samples": count,
        "results": {k: [m.to_json() for m in v] for k, v in results.items()},
        "agreement": {k: v.to_json() for k, v in tasks.items()},
    }
    out.write_json(json_path, payload)
    console.print(f"json     {json_path}")


def _engine_outputs(
    engine: Path, config: LoadedConfig, batches: HeldOutBatches, count: int
) -> dict[str, Array]:
    from trtq.trt.runner import tensorrt_backend  # without TensorRT: reported_errors says it is needed

    return run(tensorrt_backend(engine, config), config.image_input.name, batches, count)


def _algorithms(text: str) -> list[Algorithm]:
    if text == "all":
        return list(ALGORITHMS)
    chosen = []
    for name in text.split(","):
        match = [a for a in ALGORITHMS if a == name.strip()]
        if not match:
            raise TrtqError(f"--algorithms: '{name}' is not one of {', '.join(ALGORITHMS)}")
        chosen.append(match[0])
    return chosen


def _print(results: dict[str, list[OutputMetrics]], count: int) -> None:
    table = LiteralTable(f"INT8 (Q/DQ, ONNX Runtime) vs FP32 on {count} held-out images")
    every = [m for metrics in results.values() for m in metrics]
    cells: dict[str, Callable[[OutputMetrics], str | None]] = {
        "cosine": lambda m: f"{m.cosine:.4f}",
        "SNR dB": lambda m: f"{m.snr_db:.1f}",
        "max |err|": lambda m: f"{m.max_abs_error:.4g}",
        "mean |err|": lambda m: f"{m.mean_abs_error:.4g}",
        "top-1": lambda m: None if m.top1_agreement is None else f"{m.top1_agreement:.3f}",
        "top-5": lambda m: None if m.top5_agreement is None else f"{m.top5_agreement:.3f}",
        "acc fp32/int8": lambda m: (
            None if m.fp32_accuracy is None else f"{m.fp32_accuracy:.3f}/{m.int8_accuracy:.3f}"
        ),
    }
    # Columns no output has (top-5 of a 2-class model, accuracy without --labels) are left out, so the
    # table fits 80 columns in a pipe.
    shown = {name: cell for name, cell in cells.items() if any(cell(m) is not None for m in every)}
    add_columns(table, ["scales", "output", *shown], ("scales", "output"))
    for label, metrics in results.items():
        for m in metrics:
            table.add_row(label, m.output, *[cell(m) or "-" for cell in shown.values()])
    console.print(table)
