"""docker/Dockerfile, checked statically (no Docker engine here): the image must carry OpenCV's
runtime libraries and fail at build time, not at first use, when an import is broken."""

from __future__ import annotations

import re

from conftest import REPO


def run_steps() -> list[str]:
    """Each RUN instruction with its continuation lines joined, in file order."""
    text = (REPO / "docker" / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", " ", text)
    return [line[4:] for line in joined.splitlines() if line.startswith("RUN ")]


def test_opencv_runtime_libraries_are_installed() -> None:
    """opencv-python's cv2 links libGL.so.1 (libgl1) and GLib (libglib2.0-0)."""
    installs = [step for step in run_steps() if "apt-get install" in step]
    packages = {word for step in installs for word in step.split()}
    assert {"libgl1", "libglib2.0-0"} <= packages


def test_build_time_smoke_step_imports_what_a_gpu_run_imports() -> None:
    steps = run_steps()
    install = next(i for i, step in enumerate(steps) if "pip install -e" in step)
    smoke = [
        i
        for i, step in enumerate(steps)
        if re.search(r"python3 -c \"import trtq, cv2, tensorrt, pycuda\.driver\b", step)
    ]
    assert smoke and smoke[0] > install  # after trtq is installed, so it imports the installed package
