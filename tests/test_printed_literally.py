"""User text is never markup: tensor names and paths with brackets, rich tags, unicode and control
characters, through every command that prints them and through errors, appear as they are.

Control characters are shown escaped (``\\x1b``): printed raw they would drive the terminal.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from tiny_project import tiny_project
from typer.testing import CliRunner

from trtq.cli.console import shown
from trtq.cli.main import app

runner = CliRunner()
FRAGMENTS = ["[", "]", "[bold]", "[red]", "[/]", "é", "中", "\x1b", "\x07", "\x7f", "a"]
"""Up to two of them make a name of at most 12 columns, so no table column has to fold it."""
names = st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=2).map("".join)
file_names = st.lists(st.sampled_from([f for f in FRAGMENTS if "/" not in f]), min_size=1, max_size=2).map(
    "".join
)


def run(*args: str | Path, code: int = 0) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert "MarkupError" not in result.output, result.output
    assert result.exit_code == code, result.output
    assert "\x1b" not in result.output and "\x07" not in result.output  # nothing reaches the terminal raw
    return result.output


def contains(output: str, *texts: str | Path) -> None:
    for text in texts:
        assert shown(str(text)) in output, (shown(str(text)), output)


@settings(max_examples=5, phases=[Phase.explicit, Phase.generate])  # no shrinking: minutes
@given(
    hidden=names,
    output=names,
    stem=file_names,
    model_stem=file_names,
)
def test_names_and_paths_are_printed_as_they_are(
    hidden: str, output: str, stem: str, model_stem: str
) -> None:
    if len({hidden, output, "x", "w"}) < 4:
        return
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "in[" / "]side"  # the path holds [/]
        config = tiny_project(directory, f"{stem}[train].yaml", f"{model_stem}.onnx", hidden, output)
        cache = directory / "out" / f"{model_stem}.onnx.cache"

        printed = run("calibrate", config)
        contains(printed, hidden, output, f"{model_stem}.onnx", cache)
        contains(run("cache", "inspect", cache), hidden, output, cache)
        contains(run("cache", "check", config), config, cache)
        qdq = directory / f"{stem}.qdq.onnx"
        contains(run("qdq", config, "-o", qdq), qdq)
        contains(run("compare", config, "--images", directory / "images.txt"), output)
        crosscheck = (
            directory / "out" / f"{stem}[train].crosscheck.json"
        )  # the cache is in the title, which wraps
        contains(run("crosscheck", config, "--cache", cache), hidden, output, crosscheck)
        sensitivity = directory / "out" / f"{stem}[train].sensitivity.json"
        contains(run("sensitivity", config, "--images", directory / "images.txt"), hidden, sensitivity)

        missing = directory / f"{stem}[bold]missing.cache"
        contains(run("cache", "inspect", missing, code=1), missing)
        config.write_text(config.read_text() + "extra: 1\n")  # an unknown key: an error naming the file
        contains(run("calibrate", config, code=1), config)


def test_a_config_named_with_brackets_keeps_them(tmp_path: Path) -> None:
    config = tiny_project(tmp_path, "data[train].yaml", "m.onnx", "h", "y")
    config.write_text(config.read_text() + "colour: 1\n")
    assert "data[train].yaml" in run("calibrate", config, code=1)


def test_messages_are_never_hard_wrapped_and_usage_errors_keep_brackets(tmp_path: Path) -> None:
    long = tmp_path / ("[bold]" + "n" * 150 + ".cache")  # a log line must not split a name
    contains(run("cache", "inspect", long, code=1), long)
    assert "a[/]b" in run("cache", "inspect", long, "--sort", "a[/]b", code=2)  # typer's own message
