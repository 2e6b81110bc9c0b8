"""``trtq sensitivity CONFIG --images LIST``: rank quantized tensors by the damage they do."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress

from trtq.cli import preflight
from trtq.cli.console import LiteralTable, command_console
from trtq.cli.errors import warn
from trtq.cli.options import JsonOption
from trtq.cli.tables import add_columns
from trtq.compare.declared import check_declared_names
from trtq.compare.models import evaluation_inputs
from trtq.compare.sensitivity import analyse_sensitivity
from trtq.config import load_config
from trtq.data.from_config import calibration_entries_if_listed
from trtq.data.image_list import read_image_list
from trtq.data.overlap import overlap
from trtq.model.files import load_onnx
from trtq.qdq.scales import cache_scales

console = command_console()


def sensitivity_command(
    config: Annotated[Path, typer.Argument(help="model YAML config")],
    images: Annotated[
        Path,
        typer.Option(help="held-out images to rank on (not calibration images): a list file or a directory"),
    ],
    cache: Annotated[Path | None, typer.Option(help="scales; default: the config's cache")] = None,
    worst: Annotated[int, typer.Option(min=0, help="tensors whose consumers the proposal keeps in FP16")] = 3,
    top: Annotated[int, typer.Option(min=0, help="rows to show")] = 15,
    json_path: JsonOption = None,
) -> None:
    """Quantize all tensors but one, and one alone; rank; propose what to keep in FP16."""
    loaded = load_config(config)
    json_path = json_path if json_path is not None else loaded.default_output("sensitivity.json")
    out = preflight.sensitivity(loaded, images, json_path, cache)
    check_declared_names(loaded)
    _, scales = cache_scales(loaded, cache, warn)
    batches, count = evaluation_inputs(loaded, images)
    shared = overlap(calibration_entries_if_listed(loaded), read_image_list(images))
    if shared:
        warn(
            f"{len(shared)} of these images are also calibration images (first: {shared[0]}); the "
            "ranking and the proposal's score are measured on them, so score the proposal on other "
            "images with trtq compare"
        )
    with Progress(console=console) as progress:
        task = progress.add_task("tensors", total=None)
        result = analyse_sensitivity(
            load_onnx(loaded.model_path),
            scales,
            loaded.image_input.name,
            batches,
            count,
            loaded.spec.qdq.exclude,
            worst,
            lambda done, total: progress.update(task, completed=done, total=total),
            loaded.spec.outputs,
        )
    table = LiteralTable(
        f"Sensitivity on {count} images ({result.metric} vs FP32; lower 'alone' = more damage)"
    )
    add_columns(table, ("tensor", "alone", "all but this", "consumers"), ("tensor", "consumers"))
    for item in result.ranking[:top]:
        table.add_row(item.tensor, f"{item.alone:.4f}", f"{item.all_but:.4f}", ", ".join(item.consumers))
    console.print(table)
    console.print(
        f"{result.metric}: full INT8 {result.full_int8:.4f}, weights only {result.weights_only:.4f}, "
        f"with the proposal {result.with_proposal:.4f} (on the images it was chosen on: an optimistic "
        "figure; score it on other images with trtq compare)"
    )
    if result.with_proposal < result.full_int8:
        warn(
            f"keeping the proposal's layers in float scores below full INT8 ({result.with_proposal:.4f} < "
            f"{result.full_int8:.4f}) on these images: not proposed; no single tensor explains the loss"
        )
    else:
        console.print(f"proposal (add to {config}):\n{result.proposal_yaml()}")
    out.write_json(json_path, result.to_json())
    console.print(f"json     {json_path}")
