"""No command writes over anything it reads, nor over anything but a regular file: every output of every
command (options from the typer app, derived files, config keys) against every input role it has.

The commands and their output options are read from the app (tests/cli_commands.py): a new command
or output option fails ``test_every_output_is_tried`` until it is listed in INVOCATIONS below.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import onnx
import pytest
import yaml
from cli_commands import commands
from onnx import numpy_helper
from typer.testing import CliRunner

from trtq.cli.main import app

runner = CliRunner()

ROLES = {
    "model": "m.onnx",
    "external data": "m.onnx.data",
    "config": "cfg.yaml",
    "image list": "images.txt",
    "listed image": "photo0.png",
    "cache": "out/m.cache",
    "cache manifest": "out/m.cache.manifest.json",
    "cache report": "out/m.cache.report.json",
    "given cache": "given.cache",
    "given manifest": "given.cache.manifest.json",
    "given report": "given.cache.report.json",
    "held-out list": "held.txt",
    "held-out image": "held0.png",
    "tuning list": "tune.txt",
    "tuning image": "tune0.png",
    "labels": "labels.txt",
    "engine": "e.engine",
    "sensitivity json": "s.json",
    "bench json": "b.json",
    "tune json": "t.json",
}
CONFIG = ("model", "external data", "config", "image list", "listed image")
CACHE_SET = ("cache", "cache manifest", "cache report")
GIVEN = ("given cache", "given manifest", "given report")
HELD = ("held-out list", "held-out image")

Derive = Callable[[str], str | None]
"""The value to give an output slot so that the file it writes is the target (None: it cannot be)."""


def direct(target: str) -> str:
    return target


def qdq_summary(target: str) -> str | None:
    """qdq writes OUTPUT.json beside OUTPUT."""
    return target.removesuffix(".json") if target.endswith(".json") else None


def tune_set(target: str) -> str | None:
    """tune -o NAME.qdq.onnx writes NAME.fp32.onnx, NAME.cache (+ manifest), NAME.yaml, NAME.tune.json."""
    for suffix in (".cache.manifest.json", ".tune.json", ".fp32.onnx", ".cache", ".yaml"):
        if target.endswith(suffix):
            return target.removesuffix(suffix) + ".qdq.onnx"
    return None


@dataclass(frozen=True)
class Invocation:
    command: str
    args: tuple[str, ...]
    """OUT marks where an output option's value goes."""
    roles: tuple[str, ...]
    options: dict[str, Derive] = field(default_factory=dict)
    """Output options (by flag) and derived outputs (by a name of their own) -> the value to give."""
    config_keys: tuple[tuple[str, str], ...] = ()
    """Outputs named in the config (section, key)."""


INVOCATIONS = [
    Invocation(
        "calibrate",
        ("calibrate", "cfg.yaml", "--images", "held.txt"),
        CONFIG + HELD,
        config_keys=(("calibration", "cache"),),
    ),
    Invocation(
        "build",
        ("build", "cfg.yaml"),
        CONFIG + CACHE_SET,
        config_keys=(("build", "engine"), ("build", "timing_cache")),
    ),
    Invocation(
        "qdq",
        ("qdq", "cfg.yaml", "--cache", "given.cache", "--output", "OUT"),
        CONFIG + CACHE_SET + GIVEN,
        {"--output": direct, "the summary beside --output": qdq_summary},
    ),
    Invocation(
        "compare",
        (
            "compare",
            "cfg.yaml",
            "--images",
            "held.txt",
            "--labels",
            "labels.txt",
            "--cache",
            "given.cache",
            "--engine",
            "e.engine",
            "--json",
            "OUT",
        ),
        CONFIG + CACHE_SET + GIVEN + HELD + ("labels", "engine"),
        {"--json": direct},
    ),
    Invocation(
        "sensitivity",
        ("sensitivity", "cfg.yaml", "--images", "held.txt", "--cache", "given.cache", "--json", "OUT"),
        CONFIG + CACHE_SET + GIVEN + HELD,
        {"--json": direct},
    ),
    Invocation(
        "crosscheck",
        ("crosscheck", "cfg.yaml", "--cache", "given.cache", "--json", "OUT"),
        CONFIG + CACHE_SET + GIVEN,
        {"--json": direct},
    ),
    Invocation(
        "report",
        (
            "report",
            "cfg.yaml",
            "--cache",
            "given.cache",
            "--sensitivity",
            "s.json",
            "--bench",
            "b.json",
            "--tune",
            "t.json",
            "--output",
            "OUT",
        ),
        CONFIG + CACHE_SET + GIVEN + ("sensitivity json", "bench json", "tune json"),
        {"--output": direct},
    ),
    Invocation(
        "bench",
        ("bench", "cfg.yaml", "e.engine", "--json", "OUT"),
        CONFIG + CACHE_SET + ("engine",),
        {"--json": direct},
    ),
    Invocation("bench", ("bench", "m.onnx", "--json", "OUT"), ("model", "external data"), {"--json": direct}),
    Invocation(
        "tune",
        ("tune", "cfg.yaml", "--tune-images", "tune.txt", "--images", "held.txt", "--output", "OUT"),
        CONFIG + CACHE_SET + HELD + ("tuning list", "tuning image"),
        {"--output": direct, "the tuned set beside --output": tune_set},
    ),
    Invocation("doctor", ("doctor", "--workdir", "fresh", "--json", "OUT"), (), {"--json": direct}),
    Invocation(
        "cache retarget",
        ("cache", "retarget", "given.cache", "--trt-version", "10.9.0", "--output", "OUT"),
        ("given manifest", "given report"),  # -o given.cache itself is the in-place rewrite
        {"--output": direct},
    ),
]


def test_every_output_is_tried() -> None:
    """Each command's output options (--output, --json) are all tried; every other path it takes is given."""
    for command, parameters in commands():
        tried = [i for i in INVOCATIONS if i.command == command]
        outputs = {p.flag for p in parameters if p.is_path and p.is_output}
        assert outputs <= {flag for i in tried for flag in i.options}, command
        for parameter in parameters:
            if parameter.is_path and not parameter.is_output and parameter.flags:
                assert all(parameter.flag in i.args for i in tried), (command, parameter.flag)
        if not tried:
            assert not outputs and command in ("cache inspect", "cache check"), command


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, photos: list[Path], classifier_path: Path) -> Path:
    """Every input role as a file: the classifier with its weights as external data, photos and lists,
    the config's calibrated cache set, a given cache set, labels, an engine and JSON from other commands."""
    root = tmp_path_factory.mktemp("guarded")
    model = onnx.load(str(classifier_path))
    for node in [n for n in model.graph.node if n.op_type == "Constant"]:  # weights as raw initializers,
        weight = numpy_helper.to_array(node.attribute[0].t)  # which go to the external-data file
        model.graph.initializer.append(numpy_helper.from_array(weight, node.output[0]))
        model.graph.node.remove(node)
    onnx.save(
        model, str(root / "m.onnx"), save_as_external_data=True, location="m.onnx.data", size_threshold=0
    )
    for name, photo in (
        ("photo0", photos[0]),
        ("held0", photos[1]),
        ("tune0", photos[2]),
        ("tune1", photos[3]),
    ):
        shutil.copy(photo, root / f"{name}.png")  # a copy: the name is what matters, not the format
    (root / "images.txt").write_text("photo0.png\n")
    (root / "held.txt").write_text("held0.png\n")
    (root / "tune.txt").write_text("tune0.png\ntune1.png\n")
    config = {
        "model": {"path": "m.onnx"},
        "inputs": [{"name": "x", "shape": [1, 3, 48, 192]}],
        "preprocess": {"color": "bgr", "mean": [0.5], "std": [0.5]},
        "calibration": {"images": "images.txt", "cache": "out/m.cache"},
        "build": {"precision": "fp16"},
    }
    (root / "cfg.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    result = runner.invoke(app, ["calibrate", str(root / "cfg.yaml")])
    assert result.exit_code == 0, result.output
    for suffix in ("", ".manifest.json", ".report.json"):
        shutil.copy(root / f"out/m.cache{suffix}", root / f"given.cache{suffix}")
    (root / "labels.txt").write_text("0\n")
    (root / "e.engine").write_bytes(b"not an engine")
    for name in ("s.json", "b.json", "t.json"):
        (root / name).write_text("{}\n")
    assert all((root / path).is_file() for path in ROLES.values())
    return root


@pytest.fixture
def project(template: Path, tmp_path: Path) -> Path:
    """A fresh copy for each case (hard links: trtq replaces files by renaming, never in place), so a
    command that does write over an input fails its own case only."""
    copy = tmp_path / "project"
    shutil.copytree(template, copy, copy_function=os.link)
    return copy


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def _cases() -> Iterator[tuple[Invocation, str, str]]:
    """Every (invocation, output slot, input role) where the slot can be aimed at the role's file."""
    for invocation in INVOCATIONS:
        slots = [*invocation.options, *[f"{s}.{k}" for s, k in invocation.config_keys]]
        for slot in slots:
            for role in invocation.roles:
                derive = invocation.options.get(slot, direct)
                if derive(ROLES[role]) is not None:
                    yield invocation, slot, role


def _run(project: Path, invocation: Invocation, slot: str, target: str) -> tuple[int, str]:
    """Run ``invocation`` with output ``slot`` aimed at ``target``: exit code and flattened output."""
    args = list(invocation.args)
    if slot in invocation.options:
        value = invocation.options[slot](target)
        assert value is not None
        args[args.index("OUT")] = value
    else:
        section, key = slot.split(".")
        data = yaml.safe_load((project / "cfg.yaml").read_text())
        data.setdefault(section, {})[key] = "case.yaml" if target == "cfg.yaml" else target
        (project / "case.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
        args[args.index("cfg.yaml")] = "case.yaml"
    if "OUT" in args:
        args[args.index("OUT")] = "out/elsewhere.json"
    result = runner.invoke(app, args)
    return result.exit_code, " ".join(result.output.split())


@pytest.mark.parametrize(
    ("invocation", "slot", "role"),
    list(_cases()),
    ids=[
        f"{i.command}{' MODEL' if i.args[1] == 'm.onnx' else ''}:{slot}:{role}" for i, slot, role in _cases()
    ],
)
def test_no_output_is_an_input(
    project: Path, invocation: Invocation, slot: str, role: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project)
    before = _digests(project)
    code, output = _run(project, invocation, slot, ROLES[role])
    assert code == 1 and "an output may never overwrite" in output, output
    after = _digests(project)
    after.pop("case.yaml", None)
    assert after == before


def _special_files(directory: Path) -> dict[str, str]:
    """Files an output must never replace, by name -> the words the refusal uses."""
    made = {"a-directory": "is a directory", "a-fifo": "is a FIFO", "a-socket": "is a socket"}
    (directory / "a-directory").mkdir(parents=True, exist_ok=True)
    if not (directory / "a-fifo").exists():
        os.mkfifo(directory / "a-fifo")
    if not (directory / "a-socket").exists():
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(directory / "a-socket"))
        server.close()
    if os.geteuid() == 0:  # as root, as in the container: a copy of /dev/null's device node
        if not (directory / "a-device").exists():
            os.mknod(directory / "a-device", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        made["a-device"] = "is a character device"
    return made


def _direct_slots() -> Iterator[tuple[Invocation, str]]:
    for invocation in INVOCATIONS:
        for slot, derive in invocation.options.items():
            if derive is direct:
                yield invocation, slot
        for section, key in invocation.config_keys:
            yield invocation, f"{section}.{key}"


@pytest.mark.parametrize(
    ("invocation", "slot"),
    list(_direct_slots()),
    ids=[f"{i.command}{' MODEL' if i.args[1] == 'm.onnx' else ''}:{slot}" for i, slot in _direct_slots()],
)
def test_no_output_replaces_anything_but_a_regular_file(
    project: Path, invocation: Invocation, slot: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project)
    for name, words in _special_files(project / "special").items():
        code, output = _run(project, invocation, slot, f"special/{name}")
        assert code == 1 and words in output, (name, output)
        kind = os.lstat(project / "special" / name).st_mode
        assert not stat.S_ISREG(kind), f"{name} was replaced by a regular file"
