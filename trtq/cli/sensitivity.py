"""``trtq sensitivity CONFIG --images LIST``: rank quantized tensors by the damage they do."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress
from rich.table import Table

from trtq.calib.collect import load_onnx
from trtq.cli.errors import command_console, reported_errors, warn
from trtq.cli.state import OPTIONS
from trtq.cli.tables import add_columns
from trtq.compare.models import evaluation_inputs
from trtq.compare.sensitivity import analyse_sensitivity
from trtq.config import load_config
from trtq.data.from_config import calibration_entries_if_listed
from trtq.data.image_list import read_image_list
from trtq.data.overlap import overlap
from trtq.fileio import atomic_write_text
from trtq.paths import check_outputs, config_inputs, given_inputs, heldout_inputs
from trtq.qdq.scales import cache_scales

console = command_console()


def sensitivity_command(
    config: Annotated[Path, typer.Argument(help="model YAML config")],
    images: Annotated[
        Path, typer.Option(help="images to rank on (not calibration images): a list file or a directory")
    ],
    cache: Annotated[Path | None, typer.Option(help="scales; default: the config's cache")] = None,
    worst: Annotated[int, typer.Option(min=0, help="tensors whose consumers the proposal keeps in FP16")] = 3,
    top: Annotated[int, typer.Option(min=0, help="rows to show")] = 15,
    json_path: Annotated[
        Path | None,
        typer.Option("--json", help="default: out/CONFIG_NAME.sensitivity.json beside the config"),
    ] = None,
) -> None:
    """Quantize all tensors but one, and one alone; rank; propose what to keep in FP16."""
    with reported_errors(OPTIONS.verbose):
        loaded = load_config(config)
        json_path = json_path if json_path is not None else loaded.default_output("sensitivity.json")
        check_outputs(
            [(f"--json {json_path}", json_path)],
            [
                *config_inputs(loaded),
                *heldout_inputs(images),
                *given_inputs(cache=cache or loaded.cache_path),
            ],
        )
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
        table = Table(
            title=f"Sensitivity on {count} images ({result.metric} vs FP32; lower 'alone' = more damage)"
        )
        add_columns(table, ("tensor", "alone", "all but this", "consumers"), ("tensor", "consumers"))
        for item in result.ranking[:top]:
            table.add_row(item.tensor, f"{item.alone:.4f}", f"{item.all_but:.4f}", ", ".join(item.consumers))
        console.print(table)
        console.print(
            f"{result.metric}: full INT8 {result.full_int8:.4f}, weights only {result.weights_only:.4f}, "
            f"with the proposal {result.with_proposal:.4f} (on the images it was chosen on: an optimistic "
            "figure; score it on other images with trtq compare)\n"
            f"proposal (add to {config}):\n{result.proposal_yaml()}"
        )
        atomic_write_text(json_path, json.dumps(result.to_json(), indent=1) + "\n")
        console.print(f"json     {json_path}")
