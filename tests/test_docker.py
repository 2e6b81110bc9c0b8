"""docker/Dockerfile, checked statically (no Docker engine here): the image must carry OpenCV's
runtime libraries and fail at build time, not at first use, when an import is broken."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

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
    smoke = [i for i, step in enumerate(steps) if re.search(r"python3 -c \"import trtq, ", step)]
    assert smoke and smoke[0] > install  # after trtq is installed, so it imports the installed package
    imported = re.search(r"python3 -c \"import ([\w., ]+);", steps[smoke[0]])
    assert imported is not None
    modules = {name.strip() for name in imported.group(1).split(",")}
    assert {"trtq", "cv2", "tensorrt", "pycuda.driver", "trtq.trt.builder", "trtq.trt.runner"} <= modules
    # the compiled binning kernels too: built (and cached in the image) before any calibration needs them
    assert "trtq.calib.binning" in modules and "scan_counts(" in steps[smoke[0]]


def test_smoke_step_fails_loudly_without_the_cuda_stub() -> None:
    """Without the stub, importing pycuda.driver fails for want of libcuda.so.1; the step must say why
    before that (an explicit message and exit 1), not go on without it."""
    smoke = next(step for step in run_steps() if "stubs/libcuda.so" in step)
    guard = re.search(r'if \[ -z "\$stub" \]; then echo "([^"]+)" >&2; exit 1; fi', smoke)
    assert guard is not None and "stubs/libcuda.so" in guard.group(1)
    assert smoke.index(guard.group(0)) < smoke.index("python3 -c")
    if not list(Path("/usr/local/cuda").glob("**/stubs/libcuda.so")):  # as here: run the step for real
        ran = subprocess.run(["sh", "-c", smoke], capture_output=True, text=True, check=False)
        assert ran.returncode == 1 and ran.stderr.startswith("smoke test: no CUDA stub library")
