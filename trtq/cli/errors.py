"""How every command fails: one clear message on stderr, a non-zero exit, a traceback only with --verbose."""

from __future__ import annotations

import errno
import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

import typer
from rich.console import Console

from trtq.cli.exits import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERNAL_ERROR,
    EXIT_INTERRUPTED,
    EXIT_USER_ERROR,
    caused_by_interrupt,
)
from trtq.errors import TrtqError


class _CommandConsole(Console):
    """rich's Console with trtq's answer to a reader going away (`trtq ... | head`), where rich would
    exit with status 1: a command whose results are files carries on without its progress text; one
    whose results are this text stops with BrokenPipeError, which ``reported_errors`` ends with the
    shell's SIGPIPE status."""

    def __init__(self, results_on_stdout: bool) -> None:
        super().__init__(soft_wrap=True)  # as stderr below
        self.results_on_stdout = results_on_stdout

    def on_broken_pipe(self) -> None:
        self.quiet = True
        if self.results_on_stdout:
            raise BrokenPipeError
        _to_devnull(sys.stdout)


def _to_devnull(stream: TextIO) -> None:
    """After the reader of a stream went away: later writes and the exit's flush cannot fail again."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())


def help_ends_like_commands_on_broken_pipe() -> None:
    """typer prints --help and usage text through consoles of its own, which rich ends with status
    1 when the reader has gone (`trtq --help | head`): end those as commands whose results are
    printed text do, quietly with the shell's SIGPIPE status. For the ``trtq`` process only."""

    def end_quietly(console: Console) -> None:
        console.quiet = True
        _to_devnull(sys.stderr if console.stderr else sys.stdout)
        raise SystemExit(EXIT_BROKEN_PIPE)

    Console.on_broken_pipe = end_quietly  # type: ignore[method-assign,assignment]  # rich's documented hook, class-wide


def print_result_line(text: str) -> None:
    """One line that is the command's whole result (``--version``): a reader that went away ends it
    quietly with the shell's SIGPIPE status, as the commands do."""
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        raise _reader_gone() from None


def command_console(results_on_stdout: bool = False) -> Console:
    """The console a command prints with (stdout); ``results_on_stdout``: the printed text is the
    command's result (e.g. ``cache inspect``), not a report on files it writes."""
    return _CommandConsole(results_on_stdout)


class _MessageConsole(Console):
    """trtq's own warnings and errors (stderr): a reader of them going away must not end a command
    whose results are files; the messages go quiet instead."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        _to_devnull(sys.stderr)


# soft_wrap, here and in command_console: a message line is never broken at the console width (80
# columns in a log, where rich cannot ask a terminal), which would split a tensor name or a path.
# Tables still fit the width: their cells wrap.
stderr = _MessageConsole(stderr=True, highlight=False, soft_wrap=True)

GPU_PACKAGES = ("tensorrt", "pycuda")
_ENVIRONMENT_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS}


@contextmanager
def reported_errors(verbose: bool) -> Iterator[None]:
    try:
        yield
    except TrtqError as exc:
        _show(verbose)
        stderr.print(f"[bold red]error:[/] {exc}", markup=True, soft_wrap=True)
        raise typer.Exit(EXIT_USER_ERROR) from None
    except KeyboardInterrupt:
        raise _interrupted() from None
    except (typer.Exit, typer.Abort):
        raise
    except BrokenPipeError:
        raise _reader_gone() from None
    except OSError as exc:
        if exc.errno not in _ENVIRONMENT_ERRORS:
            raise _internal(exc, verbose) from None
        _show(verbose)  # e.g. stdout on a full disk: the machine's state, not a bug
        stderr.print(f"[bold red]error:[/] cannot write: {exc.strerror or exc}", markup=True, soft_wrap=True)
        raise typer.Exit(EXIT_USER_ERROR) from None
    except MemoryError:
        _show(verbose)
        stderr.print(
            "[bold red]error:[/] not enough memory for this run; check the input shapes and batch size "
            "(inputs in the config, --shape)",
            markup=True,
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_USER_ERROR) from None
    except ImportError as exc:
        if (exc.name or "").partition(".")[0] not in GPU_PACKAGES:
            raise _internal(exc, verbose) from None
        _show(verbose)
        stderr.print(
            f"[bold red]error:[/] TensorRT and pycuda are needed for this ({exc}); run inside NVIDIA's "
            "TensorRT container (docker/README.md), or time on the CPU with bench --backend onnxruntime",
            markup=True,
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_USER_ERROR) from None
    except Exception as exc:
        raise _internal(exc, verbose) from None


def _reader_gone() -> typer.Exit:
    """The reader of stdout went away (`trtq ... | head`): stop quietly as other command-line tools
    do, with the shell's SIGPIPE status."""
    _to_devnull(sys.stdout)
    return typer.Exit(EXIT_BROKEN_PIPE)


def _interrupted() -> typer.Exit:
    stderr.print("[yellow]interrupted[/]: no output was half-written", markup=True)
    return typer.Exit(EXIT_INTERRUPTED)


def _internal(exc: Exception, verbose: bool) -> typer.Exit:
    """Anything but a TrtqError is a bug (an AttributeError inside trtq/trt included): say so.
    Unless Ctrl-C caused it (inside a C extension's import, say): then it is the interrupt."""
    if caused_by_interrupt(exc):
        return _interrupted()
    _show(verbose)
    stderr.print(
        f"[bold red]internal error[/] (a bug in trtq, not in your input): {type(exc).__name__}: {exc}"
        + ("" if verbose else " (run with --verbose for the traceback, and please report it)"),
        markup=True,
        soft_wrap=True,
    )
    return typer.Exit(EXIT_INTERNAL_ERROR)


def warn(message: str) -> None:
    stderr.print(f"[yellow]warning[/] {message}", markup=True, soft_wrap=True)


def _show(verbose: bool) -> None:
    if verbose:
        stderr.print(traceback.format_exc(), markup=False, highlight=False)
