"""``trtq tune CONFIG --tune-images LIST -o tuned.qdq.onnx``: the INT8 setup that stays closest to FP32."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from trtq.cli import preflight
from trtq.cli.console import LiteralTable, command_console
from trtq.cli.errors import warn
from trtq.cli.options import within
from trtq.cli.tables import task_table
from trtq.config import LoadedConfig, load_config
from trtq.data.from_config import batch_source
from trtq.data.image_list import ImageEntry, read_image_list
from trtq.data.overlap import overlap
from trtq.errors import TrtqError
from trtq.model.files import load_onnx
from trtq.text import fixed_or_dash
from trtq.tune.heldout import PLAIN, TUNED, HeldOut, evaluate
from trtq.tune.outputs import tune_paths, write_outputs
from trtq.tune.pipeline import (
    SEARCH_BATCHES,
    SEARCH_IMAGES,
    TIME_LIMIT_S,
    TuneResult,
    TuneSettings,
    conv_layer_count,
    default_search_batches,
    default_validation_batches,
    tune,
)
from trtq.tune.steps import ProgressHooks, Step
from trtq.tune.summary import heldout_summary, tune_summary

console = command_console()
WRITING_SHARE = 0.1
"""The last part of --time-limit-s the searches leave: for the run in progress at the deadline, the
export and the writing, and the interpreter's start before the command's clock (about 1.5 s; with
0.05 the three models of docs/accuracy.md ended 0.4-1.4 s past 60)."""
_BUDGET = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(%?)\s*$")


def tune_command(
    config: Annotated[Path, typer.Argument(help="model YAML config")],
    tune_images: Annotated[Path, typer.Option(help="tuning images: a list file or a directory")],
    output: Annotated[Path, typer.Option("--output", "-o", help="tuned Q/DQ ONNX model to write")],
    images: Annotated[
        Path | None, typer.Option(help="held-out images for the summary (never used for tuning)")
    ] = None,
    target_cosine: Annotated[
        float | None,
        typer.Option(
            callback=within(-1.0, 1.0),
            help="stop adding float layers once the output cosine reaches this",
        ),
    ] = None,
    max_float_layers: Annotated[
        str, typer.Option(help="Conv/Gemm layers that may stay in FP16: a count, or a percentage like 10%")
    ] = "10%",
    max_tune_images: Annotated[int | None, typer.Option(min=1, help="use the first N tuning images")] = None,
    max_images: Annotated[int | None, typer.Option(min=1, help="use the first N held-out images")] = None,
    search_batches: Annotated[
        int | None,
        typer.Option(
            min=1,
            help=f"batches each threshold / float-layer candidate is measured on (default: enough for "
            f"{SEARCH_IMAGES} images, at least {SEARCH_BATCHES})",
            show_default=False,
        ),
    ] = None,
    validation_batches: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="tuning batches, spread over the list, kept out of the weight statistics and the search; "
            "a step is kept only if it is also better on them (default: a quarter of them; 0: off)",
        ),
    ] = None,
    time_limit_s: Annotated[
        float,
        typer.Option(
            callback=within(0.0, 1e9),
            help="seconds for the run but the held-out evaluation: the steps before the searches always "
            "run whole; the threshold search (most promising candidates first) and the float-layer "
            "search (layers in graph order) stop in time (0: no limit)",
        ),
    ] = TIME_LIMIT_S,
) -> None:
    """Tune weights (rounding, clipping, bias correction), thresholds and float layers; write the Q/DQ
    model, a corrected FP32 model with its cache and config for implicit builds, and tune.json."""
    started = time.perf_counter()
    loaded = load_config(config)
    paths = tune_paths(output)
    entries = read_image_list(tune_images, max_tune_images)
    listed = read_image_list(images, max_images) if images is not None else []
    preflight.tune(loaded, output, tune_images, entries, images)
    shared: list[str] = []
    if images is not None:
        shared = overlap(entries, listed)
        for where in shared[:5]:
            warn(f"held-out image is also a tuning image: {where}")
        if len(shared) > 5:
            warn(f"... {len(shared)} overlapping images in all")
    settings = _settings(
        loaded,
        entries,
        max_float_layers,
        target_cosine,
        search_batches,
        validation_batches,
        time_limit_s,
        started,
    )
    result = _tuned(loaded, entries, settings)
    summary = tune_summary(config, tune_images, len(entries), settings, loaded.batch_size, result, paths)
    summary["settings"]["time_limit_s"] = time_limit_s or None
    _print_steps(result.steps)
    console.print(result.time_breakdown())
    for note in result.time_limit_notes():
        console.print(f"note: {note} (--time-limit-s {time_limit_s:g}; 0 for the whole search)")
    if images is not None:
        evaluating = time.perf_counter()
        with console.status("held-out evaluation"):
            heldout = evaluate(loaded, result, images, max_images)
        _print_heldout(heldout)
        summary["heldout"] = heldout_summary(images, shared, heldout)
        summary["heldout"]["seconds"] = round(time.perf_counter() - evaluating, 1)
        console.print(f"held-out evaluation {summary['heldout']['seconds']:.1f} s (not in the time limit)")
        if heldout.tuned_is_worse():
            (metric, plain), (_, tuned) = heldout.judged(PLAIN), heldout.judged(TUNED)
            warn(
                f"the tuned model agrees less with FP32 than plain INT8 on the held-out images "
                f"({metric} {tuned:.4f} < {plain:.4f}): the tuning images did not "
                "represent these; tune on more or more varied images, or deploy plain INT8"
            )
    summary["seconds"] = round(time.perf_counter() - started, 1)
    write_outputs(loaded, result, paths, tune_images, entries, summary)
    console.print(
        f"{len(result.float_nodes)} of {result.conv_layers} Conv/Gemm layers in FP16; "
        f"{summary['seconds']:.0f} s\n"
        f"qdq      {paths.qdq}   (TensorRT 10 int8-qdq, TensorRT 11)\n"
        f"fp32     {paths.corrected}   (bias-corrected, for implicit INT8)\n"
        f"cache    {paths.cache}\n"
        f"config   {paths.config}   (trtq build {paths.config})\n"
        f"json     {paths.json}"
    )


def _settings(
    loaded: LoadedConfig,
    entries: list[ImageEntry],
    max_float_layers: str,
    target_cosine: float | None,
    search_batches: int | None,
    validation_batches: int | None,
    time_limit_s: float,
    started: float,
) -> TuneSettings:
    """The command line's settings, defaults filled from the tuning images (their batches)."""
    budget = _budget(max_float_layers, conv_layer_count(load_onnx(loaded.model_path)))
    available = batch_source(loaded, entries).expected_batches
    if search_batches is None:
        search_batches = default_search_batches(loaded.batch_size)
    elif search_batches > available:
        warn(f"--search-batches {search_batches}: the tuning images make {available}; searching on those")
    if validation_batches is None:
        validation_batches = default_validation_batches(available, min(search_batches, available))
    elif validation_batches > available - min(search_batches, available):
        raise TrtqError(
            f"--validation-batches {validation_batches}: the tuning images make {available} batches of "
            f"{loaded.batch_size}, {min(search_batches, available)} of them for the search; give more "
            "images, fewer validation batches or fewer --search-batches"
        )
    return TuneSettings(
        budget,
        target_cosine,
        search_batches,
        validation_batches=validation_batches,
        time_limit_s=_searches_until(time_limit_s, started),
    )


def _searches_until(time_limit_s: float, started: float) -> float | None:
    """Seconds from now the searches may run: the limit counts from the command's start, and its last
    WRITING_SHARE is left for finishing (0: no limit)."""
    if not time_limit_s:
        return None
    return max(0.0, (1 - WRITING_SHARE) * time_limit_s - (time.perf_counter() - started))


def _tuned(loaded: LoadedConfig, entries: list[ImageEntry], settings: TuneSettings) -> TuneResult:
    """trtq tune's search, with a progress bar per stage."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("starting", total=None)

        def stage(name: str, units: int) -> None:
            progress.reset(task, description=name, total=units, completed=0)

        return tune(loaded, entries, settings, ProgressHooks(stage, lambda: progress.advance(task)))


def _budget(text: str, layers: int) -> int:
    """'5' -> 5 layers, '10%' -> 10% of the Conv/Gemm layers, rounded down."""
    match = _BUDGET.match(text)
    if match is None:
        raise TrtqError(f"--max-float-layers: expected a count like 5 or a percentage like 10%, got '{text}'")
    value, percent = float(match.group(1)), match.group(2)
    if percent:
        if value > 100:
            raise TrtqError(f"--max-float-layers: {text} is more than 100%")
        return int(value / 100 * layers)
    if value != int(value):
        raise TrtqError(f"--max-float-layers: a count must be whole, got '{text}'")
    return int(value)


def _print_steps(steps: list[Step]) -> None:
    """Short step names and few columns, so the table reads in 80 columns: with a declared task the
    task agreement replaces the cosine (tune.json and the report keep every figure)."""
    by_task = any(step.task is not None for step in steps)
    title = "Tuning steps vs FP32 on the search and validation (val) batches"
    table = LiteralTable(title + (": the task metric and the error, neither traded" if by_task else ""))
    figures = ["task", "val task"] if by_task else ["cosine"]
    columns = ["step", *figures, "error", "val error", "kept", "s"]
    for column in columns:
        table.add_column(column, justify="left" if column == "step" else "right", no_wrap=column != "step")
    for step in steps:
        shown = [fixed_or_dash(step.task, 4), fixed_or_dash(step.validation_task, 4)]
        if not by_task:
            shown = [f"{step.cosine:.5f}"]
        label = step.name if step.short_name == "plain INT8" else step.short_name
        table.add_row(
            label,
            *shown,
            f"{step.error:.5f}",
            fixed_or_dash(step.validation_error, 5),
            "yes" if step.kept else "no",
            f"{step.seconds:.0f}",
        )
    console.print(table)


def _print_heldout(heldout: HeldOut) -> None:
    table = LiteralTable(f"Held-out images ({heldout.samples}), against FP32")
    for column in ("model", "output", "cosine", "SNR dB", "top-1", "top-5"):
        table.add_column(column, justify="left" if column in ("model", "output") else "right")
    for label, values in heldout.outputs.items():
        for m in values:
            table.add_row(
                label,
                m.output,
                f"{m.cosine:.4f}",
                f"{m.snr_db:.1f}",
                fixed_or_dash(m.top1_agreement, 3),
                fixed_or_dash(m.top5_agreement, 3),
            )
    console.print(table)
    if any(m.kind != "raw" for a in heldout.agreement.values() for m in a.outputs):
        console.print(
            task_table(heldout.agreement, f"Task agreement with FP32 on {heldout.samples} held-out images")
        )
