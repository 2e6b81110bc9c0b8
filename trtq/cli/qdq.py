"""``trtq qdq CONFIG -o model.qdq.onnx``: a TensorRT-ready Q/DQ model from a calibration cache."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from trtq.cli import preflight
from trtq.cli.console import command_console
from trtq.cli.errors import warn
from trtq.config import load_config
from trtq.fileio import strict_json
from trtq.model.prepare import control_flow_note
from trtq.qdq.scales import cache_scales, qdq_from_scales
from trtq.qdq.smoke import run_once
from trtq.text import first_few

console = command_console()


def qdq_command(
    config: Annotated[Path, typer.Argument(help="model YAML config")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Q/DQ ONNX model to write")],
    cache: Annotated[Path | None, typer.Option(help="scales to use; default: the config's cache")] = None,
) -> None:
    """Insert Q/DQ pairs with a cache's scales, following TensorRT's placement rules."""
    loaded = load_config(config)
    out = preflight.qdq(loaded, output, cache)
    cache_path, scales = cache_scales(loaded, cache, warn)
    result = qdq_from_scales(loaded, scales)
    run_once(result.model, loaded.image_input.name, loaded.calibration_shape)
    summary = result.summary()
    out.write_set(  # the model and its summary (OUTPUT.json) change together
        {
            output: result.model.SerializeToString(),
            preflight.qdq_summary_path(output): strict_json({"cache": str(cache_path), **summary}).encode(),
        }
    )
    console.print(
        f"{output}: {summary['quantized_activations']} activations (per-tensor), "
        f"{summary['quantized_weights']} weights (per-channel), "
        f"{summary['residual_adds_skip_branch']} residual Adds quantized on the skip branch"
    )
    for tensor in result.missing_scale:
        warn(f"'{tensor}' needs a scale but {cache_path} has none: left in float")
    for tensor, scale in result.unusable_scale.items():
        warn(f"'{tensor}' has scale {scale} in {cache_path}: left in float")
    if result.only_in_scales:
        shown = first_few(result.only_in_scales)
        console.print(f"{len(result.only_in_scales)} cache tensors are not in the graph: {shown}")
    if (note := control_flow_note(result.in_control_flow)) is not None:
        warn(note)
    if result.unmatched_exclude:
        warn(
            f"qdq.exclude in {loaded.source}: no node matches {result.unmatched_exclude} "
            "(patterns are fnmatch patterns on node names)"
        )
    if result.excluded_nodes:
        console.print(f"kept in float by qdq.exclude: {', '.join(result.excluded_nodes)}")
