"""``trtq build CONFIG...``: engines from YAML configs, in sequence, reported together."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from trtq.cli import preflight
from trtq.cli.console import LiteralTable, command_console
from trtq.cli.state import OPTIONS
from trtq.config import load_config

console = command_console()


def build_command(
    configs: Annotated[list[Path], typer.Argument(help="model YAML configs")],
    force: Annotated[bool, typer.Option(help="rebuild even when nothing changed")] = False,
) -> None:
    """Build TensorRT engines (fp32, fp16, int8 with calibration or a reused cache, int8-qdq)."""
    loaded = [load_config(path) for path in configs]  # every config is validated before any build
    preflight.build(loaded)  # engines, reports and timing caches are checked before TensorRT loads
    from trtq.trt.builder import build  # without TensorRT: reported_errors says it is needed

    table = LiteralTable("trtq build")
    for column in ("config", "precision", "engine", "result", "seconds"):
        table.add_column(column)
    for config in loaded:
        console.print(f"building {config.source} ({config.spec.build.precision})")
        outcome = build(config, force=force, verbose=OPTIONS.verbose)
        result = "reused (inputs unchanged)" if outcome.reused else "built"
        table.add_row(
            str(config.source),
            config.spec.build.precision,
            str(outcome.engine),
            result,
            f"{outcome.seconds:.1f}",
        )
    console.print(table)
