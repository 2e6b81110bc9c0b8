"""``trtq doctor``: the first command to run anywhere: what is installed, what can run, and proof."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from trtq.cli import preflight
from trtq.cli.console import LiteralTable, Part, command_console, literal
from trtq.cli.tables import add_columns
from trtq.doctor.run import Diagnosis, diagnose
from trtq.fileio import strict_json

console = command_console(results_on_stdout=True)
STATUS = {"pass": ("pass", "green"), "fail": ("FAIL", "bold red"), "skip": ("skip", "yellow")}


def doctor_command(
    json_path: Annotated[
        Path | None,
        typer.Option("--json", help="also write the findings and results as JSON ('-': stdout only)"),
    ] = None,
    workdir: Annotated[
        Path | None,
        typer.Option(help="build the tiny model's files here and keep them (default: a temp folder)"),
    ] = None,
) -> None:
    """Show what trtq finds here and check its CPU path (and, with TensorRT and a GPU, the GPU path)
    end to end on a tiny built-in model. Exit 1 if something that should work fails."""
    to_stdout = json_path is not None and str(json_path) == "-"
    out = preflight.doctor(None if to_stdout else json_path, workdir)
    diagnosis = diagnose(workdir)
    if to_stdout:
        sys.stdout.write(strict_json(diagnosis.to_json()))
        raise typer.Exit(1 if diagnosis.failed else 0)
    if json_path is not None:
        out.write_json(json_path, diagnosis.to_json())
    show(diagnosis)
    if json_path is not None:
        console.print(f"json     {json_path}")
    if diagnosis.failed:
        raise typer.Exit(1)


def show(diagnosis: Diagnosis) -> None:
    found = LiteralTable("found", title_justify="left", show_header=False)
    found.add_column("component")
    found.add_column("version", overflow="fold")
    for component in [*diagnosis.cpu, *diagnosis.gpu.components]:
        detail = f" ({component.detail})" if component.detail else ""
        version: Part = component.version if component.version else ("missing", "red")
        found.add_row(component.name, literal(version, detail))
    console.print(found)
    runs = [name for name, reason in diagnosis.commands.items() if reason is None]
    console.print(f"commands that can run: {', '.join(runs) or 'none'}")
    for name, reason in diagnosis.commands.items():
        if reason is not None:
            console.print(f"cannot run: {name} ({reason})")
    checks = LiteralTable(f"checks (in {diagnosis.workdir})", title_justify="left")
    add_columns(checks, ["check", "result", "detail"], {"check", "result", "detail"})
    for result in diagnosis.results:
        checks.add_row(result.name, literal(STATUS[result.status]), result.detail)
    console.print(checks)
    if diagnosis.header_note:
        console.print(f"note: {diagnosis.header_note}")
    console.say(*summary(diagnosis))


def summary(diagnosis: Diagnosis) -> list[Part]:
    failed = diagnosis.failed
    if failed:
        return [(f"{len(failed)} check(s) failed", "bold red"), f": {', '.join(r.name for r in failed)}"]
    passed = sum(result.status == "pass" for result in diagnosis.results)
    if diagnosis.gpu.usable:
        return [
            (f"all {passed} checks that apply to TensorRT {diagnosis.gpu.tensorrt.version} passed", "green")
        ]
    missing = ", ".join(c.name for c in diagnosis.gpu_missing)
    return [
        ("the CPU path works", "green"),
        " (the tiny model was calibrated). Engine builds and TensorRT benchmarks were not checked: this "
        f"machine lacks {missing} (see above). They need an NVIDIA GPU with its driver, TensorRT and "
        "pycuda (pip install 'trtq[trt]', or docker/)",
    ]
