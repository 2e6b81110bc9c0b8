"""Rich tables that stay readable in a pipe (80 columns): names fold, numbers never split."""

from __future__ import annotations

from collections.abc import Collection, Iterable

from trtq.cli.console import LiteralTable


def add_columns(table: LiteralTable, names: Iterable[str], text: Collection[str]) -> None:
    """Columns in ``text`` hold names and fold when the table is too wide (never below a readable
    width: the rows must stay telling which is which); every other column holds
    numbers, right-aligned and never wrapped (a number split over two lines reads as two numbers)."""
    for name in names:
        if name in text:
            table.add_column(name, overflow="fold", min_width=min(len(name), 12) or 6)
        else:
            table.add_column(name, justify="right", no_wrap=True)
