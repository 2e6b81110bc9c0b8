"""``trtq doctor``: the first command to run anywhere: what is installed, what can run, and proof."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from trtq.cli.errors import command_console, reported_errors
from trtq.cli.state import OPTIONS
from trtq.cli.tables import add_columns
from trtq.doctor.run import Diagnosis, diagnose
from trtq.fileio import atomic_write_text

console = command_console(results_on_stdout=True)
STATUS = {"pass": "[green]pass[/]", "fail": "[bold red]FAIL[/]", "skip": "[yellow]skip[/]"}


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
    with reported_errors(OPTIONS.verbose):
        diagnosis = diagnose(workdir)
        if json_path is not None:
            text = json.dumps(diagnosis.to_json(), indent=1) + "\n"
            if str(json_path) == "-":
                typer.echo(text, nl=False)
                raise typer.Exit(1 if diagnosis.failed else 0)
            atomic_write_text(json_path, text)
        show(diagnosis)
        if json_path is not None:
            console.print(f"json     {json_path}")
        if diagnosis.failed:
            raise typer.Exit(1)


def show(diagnosis: Diagnosis) -> None:
    found = Table(title="found", title_justify="left", show_header=False)
    found.add_column("component")
    found.add_column("version", overflow="fold")
    for component in [*diagnosis.cpu, *diagnosis.gpu.components]:
        version = component.version or "[red]missing[/]"
        detail = f" ({escape(component.detail)})" if component.detail else ""
        found.add_row(component.name, f"{escape(version) if component.version else version}{detail}")
    console.print(found)
    runs = [name for name, reason in diagnosis.commands.items() if reason is None]
    blocked = {name: reason for name, reason in diagnosis.commands.items() if reason is not None}
    console.print(f"commands that can run: {', '.join(runs) or 'none'}")
    for name, reason in blocked.items():
        console.print(f"cannot run: {name} ({escape(str(reason))})")
    checks = Table(title=f"checks (in {escape(diagnosis.workdir)})", title_justify="left")
    add_columns(checks, ["check", "result", "detail"], {"check", "result", "detail"})
    for result in diagnosis.results:
        checks.add_row(escape(result.name), STATUS[result.status], escape(result.detail))
    console.print(checks)
    if diagnosis.header_note:
        console.print(f"note: {escape(diagnosis.header_note)}")
    console.print(summary(diagnosis))


def summary(diagnosis: Diagnosis) -> str:
    failed = diagnosis.failed
    if failed:
        return f"[bold red]{len(failed)} check(s) failed[/]: {escape(', '.join(r.name for r in failed))}"
    passed = sum(result.status == "pass" for result in diagnosis.results)
    if diagnosis.gpu.usable:
        return f"[green]all {passed} checks that apply to TensorRT {diagnosis.gpu.tensorrt.version} passed[/]"
    missing = ", ".join(c.name for c in diagnosis.gpu_missing)
    return (
        "[green]the CPU path works[/] (the tiny model was calibrated). Engine builds and TensorRT "
        f"benchmarks were not checked: this machine lacks {missing} (see above). They need an NVIDIA "
        "GPU with its driver, TensorRT and pycuda (pip install 'trtq\\[trt]', or docker/)"
    )
