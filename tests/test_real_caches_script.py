"""benchmarks/real_caches.py on caches written here: every format read bit-exactly, another tool's
table named, and a reading that differs from the file's bytes is a failure (exit 1)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import REPO
from test_cache_headers import HEADERS, ONNXRUNTIME_TABLE, cache_bytes

SPEC = importlib.util.spec_from_file_location("real_caches", REPO / "benchmarks" / "real_caches.py")
assert SPEC is not None and SPEC.loader is not None
SCRIPT = sys.modules["real_caches"] = importlib.util.module_from_spec(SPEC)  # dataclasses look it up
SPEC.loader.exec_module(SCRIPT)

Run = Callable[[Path], tuple[int, str]]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Run:
    """(exit status, stdout) of ``python benchmarks/real_caches.py DIR``."""

    def run(directory: Path) -> tuple[int, str]:
        monkeypatch.setattr(sys, "argv", ["real_caches.py", str(directory)])
        code: int = SCRIPT.main()
        return code, capsys.readouterr().out

    return run


def test_every_format_is_bit_exact_and_another_tools_table_is_named(tmp_path: Path, run: Run) -> None:
    for number, header in enumerate(HEADERS.values()):
        (tmp_path / f"{number}.cache").write_bytes(cache_bytes(header, "\r\n" if number % 2 else "\n"))
    (tmp_path / "ort.cache").write_text(ONNXRUNTIME_TABLE)
    code, output = run(tmp_path)
    assert code == 0, output
    rows = [
        "| 1.cache | TRT-<version>-<Algorithm> | 10.0.1 | MinMaxCalibration | 6 | bit-exact | header only |",
        "| 5.cache | TensorRT 4 (`1`) | none in the header | EntropyCalibration | 6 | bit-exact | refused",
        "| 6.cache | legacy calibrator (regression cutoff 1.0, quantile 0.9999) | none in the header |",
        "| ort.cache | not TensorRT's | - | - | - | named: this is ONNX Runtime's calibration table | - |",
        f"{len(HEADERS) + 1} files: {len(HEADERS)} read bit-exactly ({6 * len(HEADERS)} scales), "
        f"{len(HEADERS) - 2} retargeted with every scale line byte-identical, 1 named",
    ]
    assert all(row in output for row in rows), output


def test_a_scale_trtq_would_write_differently_fails(tmp_path: Path, run: Run) -> None:
    # Zero-padded hex reads as the same float, but TensorRT (and trtq) would write 3f80000.
    (tmp_path / "padded.cache").write_text("TRT-101601-EntropyCalibration2\na: 03f80000\n")
    code, output = run(tmp_path)
    assert code == 1 and "FAILED: a: file 03f80000, trtq 3f80000" in output
    (tmp_path / "padded.cache").write_text("calibration\n")
    code, output = run(tmp_path)
    assert code == 1 and "FAILED: " in output
