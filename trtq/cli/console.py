"""Everything trtq prints goes through these consoles, and no text is ever read as rich markup.

Paths, tensor names and messages come from users: a config named ``data[train].yaml`` must be
shown as it is, a tensor named ``out[bold]`` must not turn the terminal bold, and ``[/]`` in a
path must not raise rich's MarkupError. So markup is off everywhere; trtq's own styles are given
as ``(text, style)`` parts, and control characters (an escape sequence in a file name would drive
the terminal) are shown as ``\\x1b``-style escapes.
"""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO

from rich.console import Console
from rich.status import Status
from rich.table import Table
from rich.text import Text

Part = str | tuple[str, str]
"""Plain text, or (text, style) for trtq's own emphasis such as ("warning", "yellow")."""

_KEPT = {"\n", "\t"}


def shown(text: str) -> str:
    """``text`` with control characters (C0, DEL, C1) but newline and tab written as escapes."""
    if text.isprintable():
        return text
    return "".join(char if char in _KEPT or not _is_control(char) else repr(char)[1:-1] for char in text)


def _is_control(char: str) -> bool:
    code = ord(char)
    return code < 0x20 or 0x7F <= code < 0xA0


def literal(*parts: Part) -> Text:
    """One Text of ``parts``, each shown as it is (no markup, control characters escaped)."""
    text = Text()
    for part in parts:
        if isinstance(part, str):
            text.append(shown(part))
        else:
            text.append(shown(part[0]), style=part[1])
    return text


class LiteralTable(Table):
    """A rich Table whose title and string cells are shown as they are: a cell is a tensor name."""

    def __init__(self, title: str, **options: Any) -> None:
        super().__init__(title=literal(title), **options)

    def add_row(self, *cells: Any, **options: Any) -> None:
        super().add_row(*[literal(cell) if isinstance(cell, str) else cell for cell in cells], **options)


def to_devnull(stream: TextIO) -> None:
    """After the reader of a stream went away: later writes and the exit's flush cannot fail again."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())


class TrtqConsole(Console):
    """rich's Console with markup and highlighting off, strings shown literally, messages never
    hard-wrapped (a log must not split a tensor name over two lines; tables still fit the width),
    and trtq's answer to a reader going away (`trtq ... | head`), where rich would exit with
    status 1: a command whose results are files carries on without its progress text; one whose
    results are this text stops with BrokenPipeError, which ``reported_errors`` ends with the
    shell's SIGPIPE status; messages on stderr go quiet."""

    def __init__(self, results_on_stdout: bool = False, stderr: bool = False) -> None:
        super().__init__(stderr=stderr, markup=False, highlight=False)
        self.results_on_stdout = results_on_stdout

    def print(self, *objects: Any, **options: Any) -> None:
        if all(isinstance(item, str | Text) for item in objects):
            options.setdefault("soft_wrap", True)
        super().print(*[literal(item) if isinstance(item, str) else item for item in objects], **options)

    def say(self, *parts: Part) -> None:
        """One message line (or several, with newlines in it), user text shown as it is."""
        self.print(literal(*parts))

    def status(self, status: Any, **options: Any) -> Status:
        return super().status(literal(status) if isinstance(status, str) else status, **options)

    def on_broken_pipe(self) -> None:
        self.quiet = True
        if self.stderr:
            to_devnull(sys.stderr)
            return
        if self.results_on_stdout:
            raise BrokenPipeError
        to_devnull(sys.stdout)


def command_console(results_on_stdout: bool = False) -> TrtqConsole:
    """The console a command prints with (stdout); ``results_on_stdout``: the printed text is the
    command's result (e.g. ``cache inspect``), not a report on files it writes."""
    return TrtqConsole(results_on_stdout)


stderr = TrtqConsole(stderr=True)
"""trtq's own warnings and errors: a reader of them going away must not end a command whose results
are files; the messages go quiet instead."""
