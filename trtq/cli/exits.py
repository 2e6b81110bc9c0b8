"""Exit statuses and how an interrupt is recognised: a leaf both the entry point and the error
handling import (standard library only, so the entry point stays light)."""

from __future__ import annotations

EXIT_USER_ERROR = 1
EXIT_INTERNAL_ERROR = 3
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141


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
