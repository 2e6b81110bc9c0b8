"""One doctor run: what was found, which commands can run, and the checks' results."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trtq.doctor.found import Component, GpuStack, cpu_stack, gpu_stack, runnable_commands
from trtq.doctor.results import Check, Result, run_checks

CPU_CHECK = "calibrate the tiny model on the CPU"


@dataclass(frozen=True)
class Diagnosis:
    cpu: list[Component]
    gpu: GpuStack
    commands: dict[str, str | None]
    results: list[Result]
    workdir: str

    @property
    def failed(self) -> list[Result]:
        return [result for result in self.results if result.status == "fail"]

    @property
    def header_note(self) -> str | None:
        """Where the cache header's default TensorRT version comes from, against the running one."""
        from trtq.config.schema import CalibrationSection

        default = CalibrationSection.model_fields["trt_version"].default
        running = self.gpu.tensorrt.version
        # TensorRT 11 reads no calibration cache: its INT8 comes from `trtq qdq`'s model.
        if running is None or running.startswith(f"{default}.") or (self.gpu.trt_major or 0) >= 11:
            return None
        return (
            f"caches from `trtq calibrate` target TensorRT {default} in their header by default (the "
            f"newest TensorRT 10 on PyPI); this machine runs TensorRT {running}: `trtq build` rewrites "
            f"the header for it, or set calibration.trt_version to its major.minor.patch"
        )

    @property
    def gpu_missing(self) -> list[Component]:
        return [c for c in (self.gpu.tensorrt, self.gpu.pycuda, self.gpu.driver, self.gpu.gpu) if not c.found]

    def to_json(self) -> dict[str, Any]:
        return {
            "found": [c.to_json() for c in [*self.cpu, *self.gpu.components]],
            "commands": {
                name: {"runs": reason is None, "reason": reason} for name, reason in self.commands.items()
            },
            "checks": [result.to_json() for result in self.results],
            "gpu_checked": self.gpu.usable,
            "notes": [note for note in [self.header_note] if note],
            "workdir": self.workdir,
            "ok": not self.failed,
        }


def diagnose(workdir: Path | None = None) -> Diagnosis:
    """Probe, then check on the tiny model in ``workdir`` (default: a temporary folder, removed)."""
    cpu, gpu = cpu_stack(), gpu_stack()
    commands = runnable_commands(cpu, gpu)
    if workdir is not None:
        return Diagnosis(cpu, gpu, commands, _checks(cpu, gpu, workdir), str(workdir))
    with tempfile.TemporaryDirectory(prefix="trtq-doctor-") as folder:
        return Diagnosis(cpu, gpu, commands, _checks(cpu, gpu, Path(folder)), f"{folder} (removed)")


def _checks(cpu: list[Component], gpu: GpuStack, folder: Path) -> list[Result]:
    missing = [c.name for c in cpu if not c.found]
    if missing:
        return [Result(CPU_CHECK, "fail", f"missing {', '.join(missing)}: trtq's CPU path cannot run")]
    from trtq.doctor.checks import cpu_calibration, gpu_checks
    from trtq.doctor.tiny import TinyWorkspace

    workspace = TinyWorkspace(folder)
    checks = [Check(CPU_CHECK, cpu_calibration)]
    if gpu.usable and gpu.trt_major is not None:
        runtime = gpu.runtime
        checks += gpu_checks(gpu.trt_major, None if runtime.found else runtime.detail or "not found")
    return run_checks(workspace, checks)
