"""Rich tables that stay readable in a pipe (80 columns): names fold, numbers never split."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from trtq.cli.console import LiteralTable
from trtq.compare.tasks import Agreement


def add_columns(table: LiteralTable, names: Iterable[str], text: Collection[str]) -> None:
    """Columns in ``text`` hold names and fold when the table is too wide (never below a readable
    width: the rows must stay telling which is which); every other column holds
    numbers, right-aligned and never wrapped (a number split over two lines reads as two numbers)."""
    for name in names:
        if name in text:
            table.add_column(name, overflow="fold", min_width=min(len(name), 12) or 6)
        else:
            table.add_column(name, justify="right", no_wrap=True)


def task_table(tasks: Mapping[str, Agreement], title: str) -> LiteralTable:
    """The declared outputs' task scores per INT8 variant; with several, the best (by the ranking
    metric) is marked."""
    best = max(tasks, key=lambda label: tasks[label].value) if len(tasks) > 1 else None
    metric = next(iter(tasks.values())).metric
    table = LiteralTable(f"{title} (ranked by {metric})")
    add_columns(table, ["scales", "output", "kind", "scores"], ("scales", "output", "scores"))
    for label, result in tasks.items():
        shown = label + (" *" if label == best else "")
        for m in result.outputs:
            if m.kind == "raw":
                continue
            scores = ", ".join(f"{k} {v:.4g}" for k, v in m.scores.items())
            table.add_row(shown, m.output, m.kind, scores)
    return table
