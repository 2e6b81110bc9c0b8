"""Wording shared by the command line and the report."""

from __future__ import annotations

from collections.abc import Sequence


def counted(count: int, singular: str, plural: str | None = None) -> str:
    """``1 batch``, ``3 batches``, ``0 images``."""
    if count == 1:
        return f"1 {singular}"
    if plural is None:
        plural = singular + ("es" if singular.endswith(("s", "x", "ch", "sh")) else "s")
    return f"{count} {plural}"


def first_few(names: Sequence[str], limit: int = 5, quoted: bool = False) -> str:
    """``a, b, c ...``: the first ``limit`` names, and ``...`` when there are more."""
    shown = [f"'{name}'" if quoted else name for name in names[:limit]]
    return ", ".join(shown) + (" ..." if len(names) > limit else "")


def fixed_or_dash(value: float | None, digits: int) -> str:
    """``0.9942`` with ``digits`` decimals, or ``-`` for a figure that was not measured."""
    return "-" if value is None else f"{value:.{digits}f}"
