"""The ``trtq`` entry point: Ctrl-C at any moment, even while the heavy imports load, ends in one line.

Only the standard library is imported before the handler is in place; inside a command,
``reported_errors`` turns the interrupt into the same line and exit status.
"""

from __future__ import annotations

import sys

EXIT_INTERRUPTED = 130


def main() -> None:
    try:
        from trtq.cli.main import app

        app()
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(EXIT_INTERRUPTED)
