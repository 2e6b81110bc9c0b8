"""``trtq cache inspect``, ``trtq cache check`` and ``trtq cache retarget``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from trtq.cache.manifest import manifest_path, read_manifest
from trtq.cache.retarget import retarget_file
from trtq.cache.trt_format import encode_version, read_cache
from trtq.calib.algorithms import INT8_MAX
from trtq.calib.pipeline import calibration_entries
from trtq.cli.errors import EXIT_USER_ERROR, reported_errors
from trtq.cli.state import OPTIONS
from trtq.config import load_config
from trtq.fingerprint import fingerprint_config

console = Console()
cache_app = typer.Typer(
    help="Inspect TensorRT calibration caches and check them against a config.", no_args_is_help=True
)


@cache_app.command("inspect")
def inspect_command(
    cache: Annotated[Path, typer.Argument(help="calibration cache (TensorRT's or trtq's)")],
    sort: Annotated[str, typer.Option(help="order rows by: file, name or scale")] = "file",
) -> None:
    """Show the header and every tensor's scale and amax (= scale * 127)."""
    with reported_errors(OPTIONS.verbose):
        if sort not in ("file", "name", "scale"):
            raise typer.BadParameter("use file, name or scale", param_hint="--sort")
        parsed = read_cache(cache)
        rows = list(parsed.scales.items())
        if sort == "name":
            rows.sort()
        elif sort == "scale":
            rows.sort(key=lambda item: -item[1])
        table = Table(
            title=f"{cache}: TensorRT {parsed.trt_version} ({parsed.version}), {parsed.algorithm}, "
            f"{len(rows)} tensors"
        )
        table.add_column("tensor", overflow="fold")
        table.add_column("scale", justify="right")
        table.add_column("amax", justify="right")
        for name, scale in rows:
            table.add_row(name, f"{scale:.6g}", f"{scale * INT8_MAX:.6g}")
        console.print(table)
        zero = sum(1 for _, s in rows if s == 0)
        infinite = sum(1 for _, s in rows if s == float("inf"))
        if zero or infinite:
            console.print(
                f"[yellow]{zero} zero and {infinite} infinite scales[/] (such tensors stay unquantized)"
            )
        manifest = manifest_path(cache)
        console.print(f"manifest: {manifest if manifest.is_file() else 'none (provenance unknown)'}")


@cache_app.command("check")
def check_command(
    cache: Annotated[Path, typer.Argument(help="calibration cache written by trtq calibrate")],
    config: Annotated[Path, typer.Option("--config", "-c", help="model YAML config")],
) -> None:
    """Exit 0 if the cache still matches the config; otherwise list why not and exit 1."""
    with reported_errors(OPTIONS.verbose):
        loaded = load_config(config)
        header = read_cache(cache)  # a malformed cache is its own, clearer error
        manifest = read_manifest(cache)
        entries = calibration_entries(loaded)
        current = fingerprint_config(loaded, entries)
        reasons = manifest.mismatches(cache, current, entries)
        if reasons:
            console.print(f"[bold red]stale[/]: {cache} does not match {config}:")
            for reason in reasons:
                console.print(f"  - {reason}")
            raise typer.Exit(EXIT_USER_ERROR)
        console.print(
            f"[green]up to date[/]: {cache} matches {config} "
            f"(fingerprint {current.digest[:16]}, {len(current.image_hashes)} images, {manifest.algorithm}, "
            f"scales by {manifest.scales_by})"
        )
        target = loaded.spec.calibration.trt_version
        if header.version != encode_version(target):
            console.print(
                f"note: the header targets TensorRT {header.trt_version}, the config TensorRT {target}. "
                "Not a reason to recalibrate (the version changes the header, not the scales): "
                "trtq build rewrites the header for the TensorRT it runs; "
                f"`trtq cache retarget {cache} --trt-version {target}` rewrites the file."
            )


@cache_app.command("retarget")
def retarget_command(
    cache: Annotated[Path, typer.Argument(help="calibration cache (TensorRT's or trtq's)")],
    trt_version: Annotated[str, typer.Option("--trt-version", help="TensorRT version, e.g. 10.13.3")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="write here (default: rewrite CACHE in place)")
    ] = None,
) -> None:
    """Rewrite the header for another TensorRT version; scales and manifest provenance are kept."""
    with reported_errors(OPTIONS.verbose):
        done = retarget_file(cache, trt_version, output)
        console.print(
            f"{done.output}: header TensorRT {done.old_version} -> {done.new_version}, scales unchanged"
            + (
                f"; manifest {done.manifest} updated"
                if done.manifest
                else "; no manifest (provenance unknown)"
            )
        )
