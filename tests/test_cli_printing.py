"""Every module of trtq/cli prints through trtq/cli/console.py: no rich Console or Table of its own,
no markup in its strings, no bare print or typer.echo, and warnings only through errors.warn
(stderr). Read from the source of every module, so a new command cannot print another way."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

CLI = Path(__file__).resolve().parent.parent / "trtq" / "cli"
MARKUP = re.compile(r"\[/?(bold|yellow|red|green|cyan|dim|italic|magenta|blue)\b[^\]]*\]|\[/\]")
MODULES = sorted(path for path in CLI.glob("*.py") if path.name != "console.py")


@pytest.mark.parametrize("module", MODULES, ids=[path.name for path in MODULES])
def test_a_command_module_prints_only_through_the_console(module: Path) -> None:
    tree = ast.parse(module.read_text(), str(module))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in ("rich.console", "rich.table"):
            names = {alias.name for alias in node.names}
            assert not names & {"Console", "Table"} or (
                module.name == "errors.py" and names == {"Console"}
            ), f"{module.name}:{node.lineno}: use trtq.cli.console (command_console, LiteralTable)"
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            assert not MARKUP.search(node.value), f"{module.name}:{node.lineno}: markup {node.value!r}"
        if isinstance(node, ast.Call):
            called = ast.unparse(node.func)
            assert called not in ("print", "typer.echo", "typer.secho"), f"{module.name}:{node.lineno}"
            if called.endswith(("console.print", "console.say")):
                text = " ".join(ast.unparse(arg) for arg in node.args).lower()
                assert "warning" not in text, f"{module.name}:{node.lineno}: warnings go through warn()"
