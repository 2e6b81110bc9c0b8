"""Fetch the published TensorRT 10.13 type stubs and repair them so mypy can check trtq/trt against them.

The tensorrt-stubs wheel does not parse as published: parameters named ``in`` (a keyword),
required parameters after defaulted ones, and an import of the uninstallable ``tensorrt_libs``.
This script downloads the wheel (no dependencies: the real TensorRT libraries cannot be
installed here), fixes those three defects mechanically, and writes the stubs to OUT_DIR, which
mypy then uses through ``mypy_path``. Errors inside the stubs themselves are silenced in
pyproject.toml; misuse of the TensorRT API in trtq is not.

    python .ci/trt_stubs.py build/trt-stubs
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

STUBS = "tensorrt-stubs==10.13.0.35.1"
MEMBERS = ("tensorrt/__init__.pyi", "tensorrt_bindings/__init__.pyi", "tensorrt_bindings/tensorrt.pyi")
_IN_PARAMETER = re.compile(r"\bin(\s*:)")
_DEF = re.compile(r"^(?P<indent>\s*)def (?P<name>\w+)\((?P<params>.*)\)(?P<rest>\s*->.*)$")


def repair(text: str) -> str:
    lines = []
    for line in text.splitlines():
        if re.match(r"\s*import tensorrt_libs\b", line) or re.match(r"\s*from tensorrt_libs\b", line):
            continue
        if line.lstrip().startswith("def "):
            line = _IN_PARAMETER.sub(r"in_\1", line)
            line = _default_after_defaults(line)
        lines.append(line.replace("'tensorrt_libs', ", ""))
    repaired = "\n".join(lines) + "\n"
    ast.parse(repaired)  # the point of the exercise: it must parse now
    return repaired


def _default_after_defaults(line: str) -> str:
    """Give every parameter after the first defaulted one a ``= ...`` default, as Python requires."""
    match = _DEF.match(line)
    if match is None or "=" not in match["params"]:
        return line
    params, seen_default = [], False
    for param in _split_params(match["params"]):
        stripped = param.strip()
        if stripped.startswith("*"):
            seen_default = (
                False if stripped in ("*", "*args") or stripped.startswith("*args") else seen_default
            )
            params.append(param)
            continue
        if "=" in stripped:
            seen_default = True
        elif seen_default and stripped not in ("/",):
            param = f"{param} = ..."
        params.append(param)
    return f"{match['indent']}def {match['name']}({', '.join(p.strip() for p in params)}){match['rest']}"


def _split_params(params: str) -> list[str]:
    """Split at top-level commas (annotations contain brackets with commas)."""
    parts, depth, current = [], 0, []
    for char in params:
        if char in "[(":
            depth += 1
        elif char in "])":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if "".join(current).strip():
        parts.append("".join(current))
    return parts


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "build/trt-stubs")
    marker = out / ".source"
    if marker.is_file() and marker.read_text() == STUBS:
        return
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                STUBS,
                "-d",
                tmp,
            ],
            check=True,
        )
        (wheel,) = Path(tmp).glob("*.whl")
        with zipfile.ZipFile(wheel) as archive:
            for member in MEMBERS:
                target = out / member
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(repair(archive.read(member).decode("utf-8")))
    marker.write_text(STUBS)


if __name__ == "__main__":
    main()
