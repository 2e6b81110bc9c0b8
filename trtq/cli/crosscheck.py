"""``trtq crosscheck CONFIG --cache CACHE``: TensorRT's scales against trtq's NumPy ones, on the CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from trtq.cache.headers import algorithm_for_header
from trtq.cache.manifest import manifest_path, read_manifest
from trtq.cache.trt_format import read_cache
from trtq.calib.run import collect_histograms
from trtq.cli import preflight
from trtq.cli.console import LiteralTable, command_console
from trtq.cli.errors import warn
from trtq.cli.options import JsonOption
from trtq.cli.tables import add_columns
from trtq.compare.scales import cross_check
from trtq.config import ALGORITHMS, Algorithm, load_config
from trtq.data.from_config import calibration_entries
from trtq.errors import TrtqError
from trtq.qdq.scales import check_coverage
from trtq.text import first_few

console = command_console()


def crosscheck_command(
    config: Annotated[Path, typer.Argument(help="model YAML config (images, preprocessing, batch size)")],
    cache: Annotated[
        Path, typer.Option("--cache", help="calibration cache to check, e.g. one TensorRT wrote")
    ],
    algorithm: Annotated[
        str | None, typer.Option(help="NumPy algorithm to compare with; default from the cache header")
    ] = None,
    top: Annotated[int, typer.Option(min=0, help="worst tensors to show")] = 15,
    json_path: JsonOption = None,
) -> None:
    """Recompute every tensor's scale on the same batches, in the same order, and compare."""
    loaded = load_config(config)
    json_path = json_path if json_path is not None else loaded.default_output("crosscheck.json")
    out = preflight.crosscheck(loaded, cache, json_path)
    entries = calibration_entries(loaded)
    parsed = read_cache(cache)
    check_coverage(loaded, cache, parsed.scales, warn)
    made_with = read_manifest(cache).algorithm if manifest_path(cache).is_file() else None
    chosen = _algorithm(algorithm, parsed.algorithm, made_with)
    with console.status(f"recomputing {chosen} scales on {len(entries)} images"):
        run = collect_histograms(loaded, entries, as_tensorrt=True)
    result = cross_check(parsed, run.scales(chosen))
    table = LiteralTable(f"{cache} vs NumPy {chosen}: worst {min(top, len(result.compared))} tensors")
    add_columns(table, ("tensor", "cache scale", "numpy scale", "ratio"), ("tensor",))
    for item in result.compared[:top]:
        table.add_row(item.tensor, f"{item.cache_scale:.6g}", f"{item.numpy_scale:.6g}", f"{item.ratio:.4f}")
    console.print(table)
    console.print(result.summary_line())
    for label, names in (
        ("only in the cache", result.only_in_cache),
        ("only in NumPy", result.only_in_numpy),
    ):
        if names:
            shown = first_few(names, 8)
            console.print(f"{len(names)} tensors {label}: {shown}")
    payload = {"cache": str(cache), "config": str(config), "algorithm": chosen, **result.to_json()}
    out.write_json(json_path, payload)
    console.print(f"json     {json_path}")


def _algorithm(requested: str | None, header: str, made_with: str | None) -> Algorithm:
    """--algorithm, else the one trtq's manifest records (a percentile or mse cache carries the
    EntropyCalibration2 header), else the one the header's calibrator computes."""
    if requested is None and made_with in ALGORITHMS:
        return next(a for a in ALGORITHMS if a == made_with)
    if requested is None:
        algorithm = algorithm_for_header(header)
        if algorithm is None:
            raise TrtqError(f"cache header algorithm {header!r} has no NumPy counterpart; pass --algorithm")
        return algorithm
    for algorithm in ALGORITHMS:
        if algorithm == requested:
            return algorithm
    raise TrtqError(f"--algorithm {requested!r}: choose one of {', '.join(ALGORITHMS)}")
