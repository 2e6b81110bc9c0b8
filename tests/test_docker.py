"""docker/Dockerfile, checked statically (no Docker engine here): the image must carry OpenCV's
runtime libraries and fail at build time, not at first use, when an import is broken."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
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
    install = next(i for i, step in enumerate(steps) if '-e ".[demo,dev]"' in step)
    smoke = [i for i, step in enumerate(steps) if re.search(r"python3 -c \"import trtq, ", step)]
    assert smoke and smoke[0] > install  # after trtq is installed, so it imports the installed package
    imported = re.search(r"python3 -c \"import ([\w., ]+);", steps[smoke[0]])
    assert imported is not None
    modules = {name.strip() for name in imported.group(1).split(",")}
    assert {"trtq", "cv2", "tensorrt", "pycuda.driver", "trtq.doctor.checks"} <= modules
    # every trtq.trt module; calibrators only where its TensorRT 10 base classes exist
    trt_modules = {f"trtq.trt.{path.stem}" for path in (REPO / "trtq" / "trt").glob("*.py")} - {
        "trtq.trt.__init__"
    }
    assert trt_modules - {"trtq.trt.calibrators"} <= modules
    assert "${TRT_MAJOR} >= 11 or importlib.import_module('trtq.trt.calibrators')" in steps[smoke[0]]
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


def test_pip_installs_into_a_venv_that_sees_the_images_packages() -> None:
    """PEP 668: an Ubuntu 24.04 python3 refuses pip outside a venv; --system-site-packages keeps
    TensorRT (not on PyPI for every CUDA) the image's. The venv comes first on PATH for every later
    step and for `docker run`."""
    text = (REPO / "docker" / "Dockerfile").read_text()
    steps = run_steps()
    venv = next(i for i, step in enumerate(steps) if "-m venv" in step)
    assert "--system-site-packages" in steps[venv] and '"$VIRTUAL_ENV"' in steps[venv]
    assert re.search(r'^ENV PATH="\$VIRTUAL_ENV/bin:\$PATH"$', text, re.MULTILINE)
    assert (
        text.index("RUN python3 -m venv")
        < text.index('ENV PATH="$VIRTUAL_ENV/bin')
        < text.index("-m pip install")
    )
    installs = [i for i, step in enumerate(steps) if "pip install" in step]
    assert installs and min(installs) > venv


def test_pycuda_build_needs_come_before_it() -> None:
    """pycuda is built from source: a C++ compiler and Python's headers must be in the image first."""
    steps = run_steps()
    apt = next(i for i, step in enumerate(steps) if "apt-get install" in step)
    assert {"build-essential", "python3-dev", "python3-venv"} <= set(steps[apt].split())
    assert apt < next(i for i, step in enumerate(steps) if "pip install" in step and "pycuda" in step)


def test_base_image_packages_are_pinned_and_what_pip_adds_is_listed() -> None:
    """numpy and onnx stay the image's: every pip install runs under name==version constraints of
    everything the image had before it that pip can read as a constraint, written by
    docker/image_packages.py (copied in before the step), not by ``pip list --format=freeze``
    redirected, whose Debian lines can make pip reject the whole file; what pip added is listed."""
    text = (REPO / "docker" / "Dockerfile").read_text()
    step = next(step for step in run_steps() if "pip install" in step)
    assert "pip list" not in step and "pip freeze" not in step
    assert text.index("COPY docker/image_packages.py ./docker/") < text.index(
        "RUN python3 docker/image_packages.py"
    )
    before = step.index("python3 docker/image_packages.py installed > /opt/trtq/base-packages.txt")
    constraints = step.index("python3 docker/image_packages.py constraints > /opt/trtq/base-constraints.txt")
    installs = [m.start() for m in re.finditer(r"python3 -m pip install ", step)]
    assert len(installs) == 2 and all(before < i and constraints < i for i in installs)
    assert all(
        step[i:].startswith("python3 -m pip install -c /opt/trtq/base-constraints.txt ") for i in installs
    )
    after = step.index("python3 docker/image_packages.py installed > /tmp/after.txt")
    assert max(installs) < after
    assert "LC_ALL=C comm -13 /opt/trtq/base-packages.txt /tmp/after.txt > /opt/trtq/pip-added.txt" in step
    assert "cat /opt/trtq/pip-added.txt" in step


def image_packages() -> Any:
    spec = importlib.util.spec_from_file_location("image_packages", REPO / "docker" / "image_packages.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DEBIAN_LISTED = [
    ("numpy", "1.26.4"),
    ("distro-info", "1.1build1"),  # Ubuntu's python3-distro-info: not PEP 440
    ("python-apt", "2.7.7ubuntu4"),
    ("distro-info", "1.1+ubuntu0.2"),  # a local version label: PEP 440, pip reads it after ==
    ("command-not-found", "0.3"),
    ("-lxc", "0.1"),  # not a project name (pypa/pip#3681)
]


def test_constraints_keep_what_pip_reads_and_name_what_they_leave_out() -> None:
    kept, dropped = image_packages().pinnable(DEBIAN_LISTED)
    assert kept == ["numpy==1.26.4", "distro-info==1.1+ubuntu0.2", "command-not-found==0.3"]
    assert dropped == ["distro-info==1.1build1", "python-apt==2.7.7ubuntu4", "-lxc==0.1"]


def pip_dry_run(constraints: Path) -> subprocess.CompletedProcess[str]:
    """``pip install`` of an installed package under ``constraints``, offline: pip parses the whole
    file first and stops at a line it cannot read."""
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--no-deps"]
    return subprocess.run(
        [*command, "-c", str(constraints), "numpy"], capture_output=True, text=True, check=False
    )


def test_pip_rejects_a_raw_listing_and_takes_the_written_constraints(tmp_path: Path) -> None:
    """The rule the step is for, seen with this pip: one unreadable line and the whole -c file is
    refused; image_packages.py's output for this environment is taken as it is."""
    raw = tmp_path / "raw.txt"
    raw.write_text("".join(f"{name}=={version}\n" for name, version in DEBIAN_LISTED))
    refused = pip_dry_run(raw)
    assert refused.returncode != 0 and "Invalid requirement: 'distro-info==1.1build1'" in refused.stderr
    script = REPO / "docker" / "image_packages.py"
    written = subprocess.run(
        [sys.executable, str(script), "constraints"], capture_output=True, text=True, check=True
    ).stdout
    assert f"numpy=={np.__version__}" in written.splitlines()
    constraints = tmp_path / "constraints.txt"
    constraints.write_text(written)
    taken = pip_dry_run(constraints)
    assert taken.returncode == 0, taken.stderr


def test_installed_lists_each_distribution_once_sorted() -> None:
    script = REPO / "docker" / "image_packages.py"
    ran = subprocess.run(
        [sys.executable, str(script), "installed"], capture_output=True, text=True, check=True
    )
    lines = ran.stdout.splitlines()
    names = [line.split("==")[0].lower().replace("_", "-") for line in lines]
    assert lines == sorted(lines) and len(names) == len(set(names))
    assert f"numpy=={np.__version__}" in lines


def test_pycuda_links_against_the_cuda_stub_while_the_image_builds() -> None:
    """No driver (so no libcuda.so) is present during `docker build`; pycuda's build links libcuda
    from $CUDA_ROOT/lib64, so the linker must be pointed at CUDA's stub (NVIDIA/nvidia-docker#76)."""
    step = next(step for step in run_steps() if re.search(r"pip install [^&]*\bpycuda\b", step))
    command = re.search(r"&& ([^&]*pip install [^&]*\bpycuda\b)", step)
    assert command is not None
    assert command.group(1).split() == [
        "CUDA_ROOT=/usr/local/cuda",
        'LIBRARY_PATH="/usr/local/cuda/lib64/stubs${LIBRARY_PATH:+:$LIBRARY_PATH}"',
        "python3",
        "-m",
        "pip",
        "install",
        "-c",
        "/opt/trtq/base-constraints.txt",
        "pycuda",
    ]
    prefix = command.group(1).split(" python3 ")[0]  # the assignments, run here by sh with `env`
    for inherited, expected in [
        (None, "/usr/local/cuda/lib64/stubs"),
        ("/x", "/usr/local/cuda/lib64/stubs:/x"),
    ]:
        env = {"PATH": os.environ["PATH"], **({"LIBRARY_PATH": inherited} if inherited else {})}
        ran = subprocess.run(
            ["sh", "-c", f"{prefix} env"], env=env, capture_output=True, text=True, check=True
        )
        assert {"CUDA_ROOT=/usr/local/cuda", f"LIBRARY_PATH={expected}"} <= set(ran.stdout.splitlines())


def test_the_image_runs_doctor_by_default() -> None:
    text = (REPO / "docker" / "Dockerfile").read_text()
    assert text.rstrip().splitlines()[-1] == 'CMD ["trtq", "doctor"]'
