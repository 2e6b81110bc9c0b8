"""``trtq cache inspect``, ``trtq cache check`` and ``trtq cache retarget``."""

from __future__ import annotations

import collections
import heapq
import itertools
import math
import sys
from collections.abc import Callable, Iterable, Iterator
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from trtq.cache.manifest import manifest_path, read_manifest
from trtq.cache.retarget import retarget_file
from trtq.cache.trt_format import open_cache, read_cache
from trtq.cli import preflight
from trtq.cli.console import command_console, shown
from trtq.cli.errors import warn
from trtq.cli.exits import EXIT_USER_ERROR
from trtq.config import load_config
from trtq.data.from_config import calibration_entries
from trtq.errors import TrtqError
from trtq.fingerprint import fingerprint_config
from trtq.numeric import INT8_MAX
from trtq.trt_versions import encode_version, version_name

console = command_console(results_on_stdout=True)


class SortOrder(str, Enum):
    file = "file"
    name = "name"
    scale = "scale"


def inspect_command(
    cache: Annotated[Path, typer.Argument(help="calibration cache (TensorRT's or trtq's)")],
    sort: Annotated[SortOrder, typer.Option(help="order rows by file, name or scale")] = SortOrder.file,
    top: Annotated[int | None, typer.Option(min=0, help="rows to show (default: every tensor)")] = None,
) -> None:
    """Show the header and every tensor's scale and amax (= scale * 127).

    The cache is streamed: in file order rows are printed as they are read; sorted with --top, only the
    top rows are kept (a heap), so a cache of millions of tensors is shown in seconds."""
    with open_cache(cache) as (header, scales):
        console.print(f"{cache}: {header.describe()}")
        counts = _Counts()
        rows = _ordered(counts.of(scales), sort, top)
        console.print(f"{'scale':>12} {'amax':>12}  tensor")
        lines = (f"{scale:12.6g} {scale * INT8_MAX:12.6g}  {shown(name)}\n" for name, scale in rows)
        while chunk := "".join(itertools.islice(lines, 4096)):
            sys.stdout.write(chunk)
        shown_rows = "" if top is None or top >= counts.tensors else f", {top} shown ({sort.value} order)"
        console.print(f"{counts.tensors} tensors{shown_rows}")
        if counts.zero or counts.infinite:
            warn(f"{counts.zero} zero and {counts.infinite} infinite scales (such tensors stay unquantized)")
        manifest = manifest_path(cache)
        console.print(f"manifest: {manifest if manifest.is_file() else 'none (provenance unknown)'}")


class _Counts:
    def __init__(self) -> None:
        self.tensors = self.zero = self.infinite = 0

    def of(self, scales: Iterator[tuple[str, float]]) -> Iterator[tuple[str, float]]:
        for name, scale in scales:
            self.tensors += 1
            self.zero += scale == 0
            self.infinite += scale == math.inf
            yield name, scale


def _ordered(
    rows: Iterator[tuple[str, float]], sort: SortOrder, top: int | None
) -> Iterable[tuple[str, float]]:
    """Rows in the chosen order; every row is still read (for the counts and the parser's checks)."""
    if sort is SortOrder.file:
        if top is None:
            return rows
        kept = list(itertools.islice(rows, top))
        collections.deque(rows, maxlen=0)
        return kept
    key: Callable[[tuple[str, float]], Any] = (
        (lambda r: r[0]) if sort is SortOrder.name else (lambda r: -r[1])
    )
    return heapq.nsmallest(top, rows, key=key) if top is not None else sorted(rows, key=key)


def check_command(
    config: Annotated[Path, typer.Argument(help="model YAML config")],
    cache: Annotated[
        Path | None, typer.Option(help="calibration cache written by trtq calibrate; default: the config's")
    ] = None,
) -> None:
    """Exit 0 if the cache still matches the config; otherwise list why not and exit 1."""
    loaded = load_config(config)
    cache = cache if cache is not None else loaded.cache_path
    header = read_cache(cache).header  # a malformed cache is its own, clearer error
    manifest = read_manifest(cache)
    entries = calibration_entries(loaded)
    current = fingerprint_config(loaded, entries)
    reasons = manifest.mismatches(cache, current, entries)
    if reasons:
        console.say(("stale", "bold red"), f": {cache} does not match {config}:")
        for reason in reasons:
            console.print(f"  - {reason}")
        raise typer.Exit(EXIT_USER_ERROR)
    console.say(
        ("up to date", "green"),
        f": {cache} matches {config} (fingerprint {current.digest[:16]}, {len(current.image_hashes)} "
        f"images, {manifest.algorithm}, scales by {manifest.scales_by})",
    )
    target = loaded.spec.calibration.trt_version
    if header.version is None:
        console.print(f"note: {cache} is in {header.format.value}, which names no TensorRT version")
    elif header.version != encode_version(target):
        console.print(
            f"note: the header targets TensorRT {header.trt_version}, the config TensorRT {target}. "
            "Not a reason to recalibrate (the version changes the header, not the scales): "
            "trtq build rewrites the header for the TensorRT it runs; "
            f"`trtq cache retarget {cache} --trt-version {target}` rewrites the file."
        )


def retarget_command(
    cache: Annotated[Path, typer.Argument(help="calibration cache (TensorRT's or trtq's)")],
    trt_version: Annotated[str, typer.Option("--trt-version", help="TensorRT version, e.g. 10.13.3")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="write here (default: rewrite CACHE in place)")
    ] = None,
) -> None:
    """Rewrite the header for another TensorRT version; scales and manifest provenance are kept."""
    try:
        version_name(trt_version)
    except ValueError as exc:
        raise TrtqError(f"--trt-version: {exc}") from None
    preflight.retarget(cache, output)
    done = retarget_file(cache, trt_version, output)
    if int(done.new_version.split(".")[0]) >= 11:
        warn(
            f"TensorRT {done.new_version} has no INT8 calibrators (weak typing was removed in 11), so "
            "no build reads this cache there; for TensorRT 11 make a Q/DQ model: trtq qdq CONFIG --cache "
            f"{done.output}"
        )
    console.print(
        f"{done.output}: header TensorRT {done.old_version} -> {done.new_version}, scales unchanged"
        + (f"; manifest {done.manifest} updated" if done.manifest else "; no manifest (provenance unknown)")
        + (
            f"; removed {done.removed_manifest}, which described the file replaced"
            if done.removed_manifest
            else ""
        )
    )
