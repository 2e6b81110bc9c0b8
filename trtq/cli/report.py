"""``trtq report CONFIG -o report.html``: one self-contained page to see why scales are what they are."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from trtq.calib.pipeline import calibration_entries, collect_histograms
from trtq.cli.errors import reported_errors
from trtq.cli.state import OPTIONS
from trtq.config import load_config
from trtq.fileio import atomic_write_text
from trtq.report.build import report_html

console = Console()


def report_command(
    config: Annotated[Path, typer.Argument(help="model YAML config")],
    output: Annotated[Path, typer.Option("--output", "-o")] = Path("out/report.html"),
    cache: Annotated[Path | None, typer.Option(help="a cache to cross-check (e.g. TensorRT's)")] = None,
    sensitivity: Annotated[Path | None, typer.Option(help="JSON from trtq sensitivity")] = None,
    bench: Annotated[Path | None, typer.Option(help="JSON from trtq bench")] = None,
    tensors: Annotated[int, typer.Option(help="tensors to plot")] = 12,
    tune: Annotated[Path | None, typer.Option(help="tune.json from trtq tune")] = None,
) -> None:
    """Histograms with thresholds, KL curves, cross-check ratios, sensitivity and latency, as HTML."""
    with reported_errors(OPTIONS.verbose):
        loaded = load_config(config)
        with console.status("calibration pass for the histograms"):
            run = collect_histograms(loaded, calibration_entries(loaded))
        atomic_write_text(output, report_html(loaded, run, tensors, cache, sensitivity, bench, tune))
        console.print(f"report   {output}")
