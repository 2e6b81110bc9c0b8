"""How every command fails: one clear message on stderr, a non-zero exit, a traceback only with --verbose."""

from __future__ import annotations

import errno
import functools
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec

import typer
from rich.console import Console

from trtq.cli.console import command_console as command_console  # its old home: commands written before
from trtq.cli.console import stderr, to_devnull
from trtq.cli.exits import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERNAL_ERROR,
    EXIT_INTERRUPTED,
    EXIT_USER_ERROR,
    caused_by_interrupt,
)
from trtq.cli.state import OPTIONS
from trtq.errors import TrtqError


def help_ends_like_commands_on_broken_pipe() -> None:
    """typer prints --help and usage text through consoles of its own, which rich ends with status
    1 when the reader has gone (`trtq --help | head`): end those as commands whose results are
    printed text do, quietly with the shell's SIGPIPE status. For the ``trtq`` process only."""

    def end_quietly(console: Console) -> None:
        console.quiet = True
        to_devnull(sys.stderr if console.stderr else sys.stdout)
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


GPU_PACKAGES = ("tensorrt", "pycuda")
_ENVIRONMENT_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS}


@contextmanager
def reported_errors(verbose: bool) -> Iterator[None]:
    try:
        yield
    except TrtqError as exc:
        _show(verbose)
        _error(str(exc))
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
        _error(f"cannot write: {exc.strerror or exc}")
        raise typer.Exit(EXIT_USER_ERROR) from None
    except MemoryError:
        _show(verbose)
        _error(
            "not enough memory for this run; check the input shapes and batch size "
            "(inputs in the config, --shape)"
        )
        raise typer.Exit(EXIT_USER_ERROR) from None
    except ImportError as exc:
        if (exc.name or "").partition(".")[0] not in GPU_PACKAGES:
            raise _internal(exc, verbose) from None
        _show(verbose)
        _error(
            f"TensorRT and pycuda are needed for this ({exc}); run inside NVIDIA's "
            "TensorRT container (docker/README.md), or time on the CPU with bench --backend onnxruntime"
        )
        raise typer.Exit(EXIT_USER_ERROR) from None
    except Exception as exc:
        raise _internal(exc, verbose) from None


def _reader_gone() -> typer.Exit:
    """The reader of stdout went away (`trtq ... | head`): stop quietly as other command-line tools
    do, with the shell's SIGPIPE status."""
    to_devnull(sys.stdout)
    return typer.Exit(EXIT_BROKEN_PIPE)


def _interrupted() -> typer.Exit:
    stderr.say(("interrupted", "yellow"), ": no output was half-written")
    return typer.Exit(EXIT_INTERRUPTED)


def _internal(exc: Exception, verbose: bool) -> typer.Exit:
    """Anything but a TrtqError is a bug (an AttributeError inside trtq/trt included): say so.
    Unless Ctrl-C caused it (inside a C extension's import, say): then it is the interrupt."""
    if caused_by_interrupt(exc):
        return _interrupted()
    _show(verbose)
    stderr.say(
        ("internal error", "bold red"),
        f" (a bug in trtq, not in your input): {type(exc).__name__}: {exc}"
        + ("" if verbose else " (run with --verbose for the traceback, and please report it)"),
    )
    return typer.Exit(EXIT_INTERNAL_ERROR)


def warn(message: str) -> None:
    """trtq's one warning channel: stderr, so stdout keeps only a command's report or results."""
    stderr.say(("warning", "yellow"), f" {message}")


def _error(message: str) -> None:
    stderr.say(("error:", "bold red"), f" {message}")


def _show(verbose: bool) -> None:
    if verbose:
        stderr.print(traceback.format_exc())


P = ParamSpec("P")


def errors_reported(command: Callable[P, None]) -> Callable[P, None]:
    """``command`` inside ``reported_errors``: applied once where commands are registered, so no
    command can fail any other way. typer reads the signature through ``functools.wraps``."""

    @functools.wraps(command)
    def reported(*args: P.args, **kwargs: P.kwargs) -> None:
        with reported_errors(OPTIONS.verbose):
            command(*args, **kwargs)

    return reported
