"""Does trtq read every calibration cache TensorRT wrote, bit for bit?

For each cache in DIR, trtq's reader (trtq.cache.trt_format.read_cache) gives the header and the
scales in file order. The script then reads the file on its own (bytes split at LF, each line at
its last colon) and checks that trtq has the file's tensor names in the file's order and that every
scale, encoded again as TensorRT does (scale_to_hex), is the file's hex (case aside); and that
retargeting the cache to TensorRT 10.16.1 (trtq.cache.retarget.retarget_bytes) changes the header
line only, or is refused for a header with no version. It prints one row per file: format, TensorRT
version, algorithm, tensor count, reading, retargeting. A file trtq names as another tool's format
is listed as such; any other refusal or difference is a failure, and the exit status 1.

    python benchmarks/real_caches.py DIR [--pattern '*.cache']
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from trtq.cache.retarget import retarget_bytes
from trtq.cache.trt_format import CacheFormat, CalibrationCache, NotATensorRTCache, read_cache, scale_to_hex
from trtq.errors import TrtqError

FORMAT_NAMES = {
    CacheFormat.TRT: "TRT-<version>-<Algorithm>",
    CacheFormat.LEGACY: "legacy calibrator",
    CacheFormat.TENSORRT4: "TensorRT 4 (`1`)",
}


@dataclass(frozen=True)
class Row:
    file: str
    format: str
    trt_version: str
    algorithm: str
    tensors: str
    result: str
    retarget: str
    failed: bool


def file_lines(data: bytes) -> list[tuple[str, str]]:
    """(name, hex) of every scale line, read without trtq: the reference the reader is checked against."""
    rows = []
    for raw in data.split(b"\n")[1:]:
        line = raw.rstrip(b"\r").decode("utf-8")
        if line.strip():
            name, _, value = line.rpartition(":")
            rows.append((name, value.strip()))
    return rows


def differences(cache: CalibrationCache, data: bytes) -> list[str]:
    """What trtq's reading of ``data`` gets wrong, line by line (empty: bit-exact, names in order)."""
    expected = file_lines(data)
    problems = []
    if list(cache.scales) != [name for name, _ in expected]:
        problems.append(f"names differ from the file's ({len(cache.scales)} read, {len(expected)} lines)")
    for (name, value), scale in zip(expected, cache.scales.values(), strict=False):
        if scale_to_hex(scale) != value.lower():
            problems.append(f"{name}: file {value}, trtq {scale_to_hex(scale)}")
    return problems


def retargeted(cache: CalibrationCache, data: bytes) -> tuple[str, bool]:
    """(what retargeting to 10.16.1 did, whether that is wrong)."""
    try:
        lines = retarget_bytes(data, "10.16.1").split(b"\n")
    except TrtqError:
        return "refused (no version)", cache.version is not None
    header = f"TRT-101601-{cache.algorithm}".encode()
    if lines[0].rstrip(b"\r") == header and lines[1:] == data.split(b"\n")[1:]:
        return "header only", cache.version is None
    return "FAILED: changed more than the header", True


def check(path: Path) -> Row:
    try:
        cache = read_cache(path)
    except NotATensorRTCache as exc:
        what = str(exc).split(": ", 1)[1].split(" (")[0]  # "this is ONNX Runtime's calibration table"
        return Row(path.name, "not TensorRT's", "-", "-", "-", f"named: {what}", "-", False)
    except TrtqError as exc:
        return Row(path.name, "?", "?", "?", "?", f"FAILED: {exc}", "-", True)
    header = cache.header
    settings = (
        f" (regression cutoff {header.regression_cutoff!r}, quantile {header.quantile!r})"
        if header.format is CacheFormat.LEGACY
        else ""
    )
    data = path.read_bytes()
    problems = differences(cache, data)
    retarget, retarget_failed = retargeted(cache, data)
    return Row(
        path.name,
        FORMAT_NAMES[header.format] + settings,
        header.trt_version or "none in the header",
        header.algorithm,
        str(len(cache.scales)),
        "bit-exact" if not problems else "FAILED: " + "; ".join(problems[:3]),
        retarget,
        bool(problems) or retarget_failed,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--pattern", default="*.cache", help="which files in DIR are caches")
    args = parser.parse_args()
    rows = [check(path) for path in sorted(args.directory.glob(args.pattern)) if path.is_file()]
    print("| file | format | TensorRT | algorithm | tensors | read | retarget |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        cells = (row.file, row.format, row.trt_version, row.algorithm, row.tensors, row.result, row.retarget)
        print("| " + " | ".join(cells) + " |")
    exact = [row for row in rows if row.result == "bit-exact"]
    retargeted_rows = [row for row in rows if row.retarget == "header only"]
    named = [row for row in rows if row.result.startswith("named")]
    failed = [row for row in rows if row.failed]
    print(
        f"\n{len(rows)} files: {len(exact)} read bit-exactly "
        f"({sum(int(row.tensors) for row in exact)} scales), {len(retargeted_rows)} retargeted with every "
        f"scale line byte-identical, {len(named)} named as another tool's format, {len(failed)} failed"
    )
    return 1 if failed or not rows else 0


if __name__ == "__main__":
    sys.exit(main())
