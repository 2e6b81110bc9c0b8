"""Options shared by commands, and command-line numbers checked like config values: finite and in range,
or one clear usage error."""

from __future__ import annotations

import math
from collections.abc import Callable
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


def within(low: float, high: float, *, above_low: bool = False) -> Callable[[float | None], float | None]:
    """A typer callback: finite and in [low, high] (or (low, high] with ``above_low``). Kept out of
    typer's own min/max, which let nan through to a message about the range ("should be less than
    or equal to 86400" for nan)."""

    def check(value: float | None) -> float | None:
        if finite(value) is None or value is None:
            return value
        if value > high or value < low or (above_low and value == low):
            opening = "(" if above_low else "["
            raise typer.BadParameter(f"{value} is not in {opening}{low:g}, {high:g}]")
        return value

    return check
