"""``trtq report CONFIG -o report.html``: one self-contained page to see why scales are what they are."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from trtq.cache.trt_format import read_cache
from trtq.calib.run import collect_histograms
from trtq.cli import preflight
from trtq.cli.console import command_console
from trtq.cli.errors import warn
from trtq.config import load_config
from trtq.data.from_config import calibration_entries
from trtq.qdq.scales import check_coverage
from trtq.report.build import report_html
from trtq.report.inputs import read_bench, read_sensitivity
from trtq.tune.summary import read_tune

console = command_console()


def report_command(
    config: Annotated[Path, typer.Argument(help="model YAML config")],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="default: out/CONFIG_NAME.report.html beside the config"),
    ] = None,
    cache: Annotated[Path | None, typer.Option(help="a cache to cross-check (e.g. TensorRT's)")] = None,
    sensitivity: Annotated[Path | None, typer.Option(help="JSON from trtq sensitivity")] = None,
    bench: Annotated[Path | None, typer.Option(help="JSON from trtq bench")] = None,
    top: Annotated[int, typer.Option(min=0, help="tensors to plot")] = 12,
    tune: Annotated[Path | None, typer.Option(help="tune.json from trtq tune")] = None,
) -> None:
    """Histograms with thresholds, KL curves, cross-check ratios, sensitivity and latency, as HTML."""
    loaded = load_config(config)
    output = output if output is not None else loaded.default_output("report.html")
    out = preflight.report(
        loaded, output, {"cache": cache, "sensitivity": sensitivity, "bench": bench, "tune": tune}
    )
    entries = calibration_entries(loaded)
    if sensitivity is not None:
        read_sensitivity(sensitivity)  # a wrong file is reported now, not after the calibration pass
    if bench is not None:
        read_bench(bench)
    if tune is not None:
        read_tune(tune)
    if cache is not None:
        check_coverage(loaded, cache, read_cache(cache).scales, warn)
    with console.status("calibration pass for the histograms"):
        run = collect_histograms(loaded, entries)
    out.write_text(output, report_html(loaded, run, top, cache, sensitivity, bench, tune))
    console.print(f"report   {output}")
