"""The image's Python packages, for docker/Dockerfile (run by the venv's python3; needs no trtq).

    python3 image_packages.py installed     every distribution the venv sees, as name==version
    python3 image_packages.py constraints   those of them pip can read in a constraints (-c) file

Both read importlib.metadata, not ``pip list --format=freeze``: Debian-packaged distributions carry
versions that are not PEP 440 (``distro-info`` 1.1build1, ``python-apt`` 2.7.7ubuntu4), which some
pip versions cannot list at all (pypa/pip#13341) and which, as ``name==version`` lines, make pip
reject the whole constraints file ("Invalid requirement"). ``constraints`` keeps every entry whose
name and version ``packaging`` parses (so numpy, onnx, TensorRT and everything else the image has
stays pinned, not only a chosen few) and names the entries it leaves out on stderr: those are the
distribution's own (apt) packages, which trtq does not depend on.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from importlib import metadata

try:
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.version import InvalidVersion, Version
except ImportError:  # not installed on its own: the copy pip ships
    from pip._vendor.packaging.requirements import InvalidRequirement, Requirement  # type: ignore[assignment]
    from pip._vendor.packaging.version import InvalidVersion, Version  # type: ignore[assignment]


def installed() -> list[tuple[str, str]]:
    """(name, version) of each distribution, the one import finds first where a name is installed
    twice (a venv's own pip shadowing the system's)."""
    seen: set[str] = set()
    found: list[tuple[str, str]] = []
    for dist in metadata.distributions():  # in sys.path order
        name, version = dist.metadata["Name"], dist.version
        key = re.sub(r"[-_.]+", "-", name or "").lower()
        if name and version and key not in seen:
            seen.add(key)
            found.append((name, version))
    return found


def pinnable(entries: Iterable[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """``name==version`` lines pip reads as constraints, and the ones it would reject."""
    kept: list[str] = []
    dropped: list[str] = []
    for name, version in entries:
        line = f"{name}=={version}"
        try:
            Version(version)
            Requirement(line)
        except (InvalidVersion, InvalidRequirement):
            dropped.append(line)
        else:
            kept.append(line)
    return kept, dropped


def main(argv: list[str]) -> int:
    if argv == ["installed"]:  # sorted by code point, as `LC_ALL=C comm` expects
        print("\n".join(sorted(f"{name}=={version}" for name, version in installed())))
        return 0
    if argv == ["constraints"]:
        kept, dropped = pinnable(installed())
        print("\n".join(kept))
        if dropped:
            print(f"not pinned (pip cannot read them as constraints): {', '.join(dropped)}", file=sys.stderr)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
