"""The ``trtq`` command line."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer

from trtq import __version__
from trtq.cli.bench import bench_command
from trtq.cli.build import build_command
from trtq.cli.cache_commands import check_command, inspect_command, retarget_command
from trtq.cli.calibrate import calibrate_command
from trtq.cli.compare import compare_command
from trtq.cli.crosscheck import crosscheck_command
from trtq.cli.doctor import doctor_command
from trtq.cli.errors import errors_reported, print_result_line
from trtq.cli.qdq import qdq_command
from trtq.cli.report import report_command
from trtq.cli.sensitivity import sensitivity_command
from trtq.cli.state import OPTIONS
from trtq.cli.tune import tune_command

app = typer.Typer(
    help="INT8 calibration and TensorRT deployment for ONNX CNNs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
cache_app = typer.Typer(
    help="Inspect TensorRT calibration caches and check them against a config.", no_args_is_help=True
)
COMMANDS: dict[typer.Typer, dict[str, Callable[..., None]]] = {
    app: {
        "calibrate": calibrate_command,
        "crosscheck": crosscheck_command,
        "build": build_command,
        "qdq": qdq_command,
        "compare": compare_command,
        "sensitivity": sensitivity_command,
        "tune": tune_command,
        "report": report_command,
        "bench": bench_command,
        "doctor": doctor_command,
    },
    cache_app: {"inspect": inspect_command, "check": check_command, "retarget": retarget_command},
}
"""Every command, registered in one place with the one way they fail (``errors_reported``)."""
for group, commands in COMMANDS.items():
    for name, command in commands.items():
        group.command(name)(errors_reported(command))
app.add_typer(cache_app, name="cache")


def _version(value: bool) -> None:
    if value:
        print_result_line(f"trtq {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="show tracebacks on errors")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    OPTIONS.verbose = verbose
