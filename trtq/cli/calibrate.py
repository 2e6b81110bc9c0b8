"""``trtq calibrate CONFIG``: CPU calibration with progress, writing cache, manifest and report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from trtq.calib.histogram import binning_compiled
from trtq.calib.run import CalibrationRun
from trtq.calibrate.auto import Evaluation, with_eval_images
from trtq.calibrate.pipeline import calibrate
from trtq.cli import preflight
from trtq.cli.console import LiteralTable, command_console
from trtq.cli.errors import warn
from trtq.cli.tables import add_columns
from trtq.config import ALGORITHMS, Algorithm, load_config
from trtq.data.batches import Batch
from trtq.data.from_config import batch_source, calibration_entries
from trtq.model.prepare import control_flow_note
from trtq.numeric import scale_from_amax
from trtq.text import counted

console = command_console()


def calibrate_command(
    config: Annotated[Path, typer.Argument(help="model YAML config")],
    top: Annotated[int, typer.Option(min=0, help="tensors to show in the summary table")] = 10,
    images: Annotated[
        Path | None,
        typer.Option(
            help="held-out images to score every algorithm on (default: hold back calibration.holdout)"
        ),
    ] = None,
) -> None:
    """Calibrate on the CPU (ONNX Runtime + NumPy) and write a TensorRT calibration cache."""
    loaded = load_config(config)
    if images is not None:
        loaded = with_eval_images(loaded, images)
    calibration = loaded.spec.calibration
    entries = calibration_entries(loaded)
    preflight.calibrate(loaded, entries)
    expected = batch_source(loaded, entries).expected_batches
    console.say(
        "calibrating ",
        (loaded.model_path.name, "bold"),
        f" on {counted(len(entries), 'image')} ({counted(expected, 'batch')} of {loaded.batch_size}, "
        f"input {list(loaded.calibration_shape)})",
    )
    if not binning_compiled():
        warn("NUMBA_DISABLE_JIT is set: histograms are counted in plain Python, hundreds of times slower")
    with _progress() as progress:
        task = progress.add_task("calibrating", total=expected * loaded.batch_size)

        def advance(batch: Batch) -> None:
            progress.advance(task, len(batch.entries))

        run, outputs = calibrate(loaded, advance, entries)
    _summary(run, outputs.algorithm, top)
    if outputs.evaluation is not None:
        _evaluation(outputs.evaluation, outputs.algorithm, calibration.algorithm == "auto")
    stats = run.stats
    console.print(
        f"{counted(stats.used, 'image')} in {counted(stats.batches, 'batch')}, calibration pass "
        f"{run.seconds:.1f} s ({stats.used / max(run.seconds, 1e-9):.1f} images/s); "
        f"{len(stats.skipped)} skipped, {stats.dropped} dropped, {stats.wrapped} wrapped"
    )
    console.print(_time_breakdown(run))
    for skipped in stats.skipped:
        warn(f"skipped {skipped}")
    warning = run.doubling_warning(loaded.batch_size) if outputs.algorithm != "minmax" else None
    if warning is not None:  # minmax reads max |x| only, which no doubling changes
        warn(warning)
    for note in (
        run.clipping_warning(outputs.algorithm),
        run.zero_warning(),
        control_flow_note(run.in_control_flow),
    ):
        if note is not None:
            warn(note)
    console.print(f"cache    {outputs.cache}\nmanifest {outputs.manifest}\nreport   {outputs.report}")


def _time_breakdown(run: CalibrationRun) -> str:
    """One line: where the time went, so users see whether decoding, the model or statistics dominate."""
    stages = ("decode", "model", "statistics", "thresholds", "evaluation", "writing")
    shown = [f"{stage} {run.timings[stage]:.1f} s" for stage in stages if stage in run.timings]
    return "time: " + ", ".join(shown) + " (decode: waiting for images)"


class _RateColumn(ProgressColumn):
    """Images per second (rich's own speed column formats bytes)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:.1f} img/s", style="cyan")


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("images"),
        _RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def _summary(run: CalibrationRun, chosen: Algorithm, top: int) -> None:
    table = LiteralTable(f"amax of the {top} largest of {len(run.histograms)} tensors (* = cache)")
    columns = [
        "tensor",
        *[algorithm + ("*" if algorithm == chosen else "") for algorithm in ALGORITHMS],
        "scale",
    ]
    add_columns(table, columns, ("tensor",))
    names = sorted(run.histograms, key=lambda n: -float(run.amax(n, chosen)))
    for name in names[:top]:
        amaxes = [f"{float(run.amax(name, algorithm)):.5g}" for algorithm in ALGORITHMS]
        table.add_row(name, *amaxes, f"{float(scale_from_amax(run.amax(name, chosen))):.4g}")
    console.print(table)


def _evaluation(evaluation: Evaluation, cached: Algorithm, auto: bool) -> None:
    """Each algorithm's INT8 agreement with FP32 on images it was not calibrated on; auto's choice
    and why, or a warning when the configured algorithm is far below the best."""
    table = LiteralTable(f"INT8 (Q/DQ, ONNX Runtime) vs FP32 on {evaluation.where} (* = cache)")
    add_columns(table, ["algorithm", evaluation.metric, "other scores"], ("algorithm", "other scores"))
    for algorithm, scores in evaluation.scores.items():
        tasks = [m for m in scores.outputs if m.kind != "raw"]
        named = len(tasks) > 1
        others = [
            f"{m.output} {k} {v:.4g}" if named else f"{k} {v:.4g}"
            for m in tasks
            for k, v in m.scores.items()
            if named or k != m.metric
        ]
        table.add_row(
            algorithm + ("*" if algorithm == cached else ""), f"{scores.value:.4f}", ", ".join(others) or "-"
        )
    for algorithm in evaluation.unscored:
        table.add_row(algorithm, "-", "no finite scales (a threshold beyond float32's range)")
    console.print(table)
    if auto:
        console.say("algorithm: auto chose ", (cached, "bold"), f": {evaluation.reason()}")
    elif evaluation.far_below(cached):
        best = evaluation.best
        warn(
            f"calibration.algorithm {cached} reaches {evaluation.metric} "
            f"{evaluation.scores[cached].value:.4f} on {evaluation.where}, far below {best} "
            f"({evaluation.scores[best].value:.4f}): this INT8 model may be quietly broken; "
            f"use algorithm: {best} or auto"
        )
