"""Every trtq command and its parameters, read from the typer app (not listed by hand), so tests that
enumerate commands or options fail when a new one is added without them."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import typer
from typer.models import ArgumentInfo, OptionInfo, ParameterInfo

from trtq.cli.main import app


@dataclass(frozen=True)
class Parameter:
    command: str
    """e.g. "cache retarget"."""
    name: str
    """The Python name, e.g. json_path."""
    flags: tuple[str, ...]
    """("--output", "-o") for an option; () for a positional argument."""
    is_path: bool
    help: str
    optional: bool
    """It has a default (None for a path computed by the command)."""

    @property
    def flag(self) -> str:
        return self.flags[0] if self.flags else self.name.upper()

    @property
    def is_output(self) -> bool:
        return self.flag in ("--output", "--json")


def commands(group: typer.Typer = app, prefix: str = "") -> Iterator[tuple[str, list[Parameter]]]:
    """Every command's full name and parameters; each command is registered wrapped in
    ``errors_reported`` (the one way commands fail), which is checked here too."""
    for info in group.registered_commands:
        assert info.callback is not None and info.name is not None
        name = f"{prefix}{info.name}"
        assert info.callback.__code__.co_name == "reported", (
            f"{name} is not registered through errors_reported"
        )
        yield name, list(_parameters(name, info.callback))
    for sub in group.registered_groups:
        assert sub.typer_instance is not None and sub.name is not None
        yield from commands(sub.typer_instance, f"{prefix}{sub.name} ")


def _parameters(command: str, callback: typing.Callable[..., object]) -> Iterator[Parameter]:
    for name, parameter in inspect.signature(callback, eval_str=True).parameters.items():
        annotation = parameter.annotation
        base, *metadata = typing.get_args(annotation)
        info = next(m for m in metadata if isinstance(m, ParameterInfo))
        decls = tuple(info.param_decls or ())
        if isinstance(info.default, str) and info.default.startswith("-"):
            decls = (info.default, *decls)  # typer.Option("--json", ...) under Annotated: a declaration
        if isinstance(info, OptionInfo):
            flags = tuple(
                sorted((d for d in decls if d.startswith("-")), key=lambda d: not d.startswith("--"))
            )
            flags = flags or (f"--{name.replace('_', '-')}",)
        else:
            assert isinstance(info, ArgumentInfo)
            flags = ()
        optional = parameter.default is not inspect.Parameter.empty
        yield Parameter(command, name, flags, _is_path(base), str(info.help or ""), optional)


def _is_path(annotation: object) -> bool:
    if annotation is Path:
        return True
    return any(_is_path(arg) for arg in typing.get_args(annotation))
