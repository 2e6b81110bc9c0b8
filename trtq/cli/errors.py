"""How every command fails: one clear message on stderr, a non-zero exit, a traceback only with --verbose."""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console

from trtq.errors import TrtqError

stderr = Console(stderr=True, highlight=False)

EXIT_USER_ERROR = 1
EXIT_INTERNAL_ERROR = 3
EXIT_INTERRUPTED = 130


@contextmanager
def reported_errors(verbose: bool) -> Iterator[None]:
    try:
        yield
    except TrtqError as exc:
        _show(verbose)
        stderr.print(f"[bold red]error:[/] {exc}", markup=True, soft_wrap=True)
        raise typer.Exit(EXIT_USER_ERROR) from None
    except KeyboardInterrupt:
        stderr.print("[yellow]interrupted[/]: no cache, manifest or report was half-written", markup=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:
        _show(verbose)
        stderr.print(
            f"[bold red]internal error:[/] {type(exc).__name__}: {exc}"
            + ("" if verbose else " (run with --verbose for the traceback)"),
            markup=True,
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_INTERNAL_ERROR) from None


def _show(verbose: bool) -> None:
    if verbose:
        stderr.print(traceback.format_exc(), markup=False, highlight=False)
