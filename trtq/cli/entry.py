"""The ``trtq`` entry point: Ctrl-C at any moment, even while the heavy imports load, ends in one line.

Only the standard library is imported before the handler is in place; inside a command,
``reported_errors`` turns the interrupt into the same line and exit status.
"""

from __future__ import annotations

import sys

EXIT_INTERRUPTED = 130


def caused_by_interrupt(exc: BaseException) -> bool:
    """Ctrl-C inside a C extension's import surfaces as that import's error (e.g. ONNX Runtime's
    "initialization failed"), with the KeyboardInterrupt as its cause or context."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def main() -> None:
    try:
        from trtq.cli.errors import help_ends_like_commands_on_broken_pipe
        from trtq.cli.main import app

        help_ends_like_commands_on_broken_pipe()
        app()
    except (KeyboardInterrupt, Exception) as exc:  # an interrupt, or an error it caused
        if not caused_by_interrupt(exc):
            raise
        sys.stderr.write("interrupted\n")
        sys.exit(EXIT_INTERRUPTED)
