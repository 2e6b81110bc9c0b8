"""One command-line grammar, read from the typer app: the config is the first positional argument,
the main artefact is -o/--output and a summary --json, an option name means one thing in every
command, durations carry their unit, and the old spellings are gone."""

from __future__ import annotations

from cli_commands import Parameter, commands

OLD_NAMES = {"--tensors", "--duration", "--eval-images", "--max-eval-images", "--config", "-c"}
HELD_OUT = "held-out"


def _all() -> list[Parameter]:
    return [parameter for _, parameters in commands() for parameter in parameters]


def test_the_config_is_the_first_positional_argument() -> None:
    for command, parameters in commands():
        configs = [p for p in parameters if p.name in ("config", "configs")]
        if configs:
            assert parameters[0] is configs[0] and not configs[0].flags, command


def test_outputs_are_output_or_json_and_output_has_o() -> None:
    for parameter in _all():
        if parameter.flag == "--output":
            assert "-o" in parameter.flags, parameter.command
        assert parameter.flag not in ("--out", "--json-path", "--output-json"), parameter


def test_one_meaning_per_option_name() -> None:
    for parameter in _all():
        if parameter.flag == "--images":
            assert HELD_OUT in parameter.help, (parameter.command, parameter.help)
        if parameter.flag == "--top":
            assert parameter.help, parameter.command
    assert not {p.flag for p in _all()} & OLD_NAMES


def test_durations_carry_their_unit() -> None:
    for parameter in _all():
        if any(word in parameter.flag for word in ("duration", "warmup", "timeout")):
            assert parameter.flag.endswith(("-s", "-ms")), parameter.flag
