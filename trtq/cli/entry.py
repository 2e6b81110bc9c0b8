"""The ``trtq`` entry point: Ctrl-C at any moment, even while the heavy imports load, ends in one line.

Only the standard library is imported before the handler is in place; inside a command,
``reported_errors`` turns the interrupt into the same line and exit status.
"""

from __future__ import annotations

import sys

from trtq.cli.exits import EXIT_INTERRUPTED, caused_by_interrupt


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
