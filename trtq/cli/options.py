"""Options shared by commands, and command-line numbers checked like config values: finite and in range,
or one clear usage error."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

JsonOption = Annotated[
    Path | None,
    typer.Option(
        "--json", help="machine-readable summary; default: out/CONFIG_NAME.COMMAND.json beside the config"
    ),
]
"""Every command's machine-readable summary is --json, by default where this says (one rule)."""


def finite(value: float | None) -> float | None:
    """Typer callback: click's FloatRange lets nan (and inf) through, and a nan duration never ends."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value


def positive_finite(value: float | None) -> float | None:
    """Typer callback for durations that must be > 0 (typer's ``min`` is inclusive)."""
    if finite(value) is not None and value is not None and value <= 0:
        raise typer.BadParameter(f"{value} is not > 0")
    return value
