"""Point a cache's header at another TensorRT version, leaving every scale line byte-identical.

The header's version is what a TensorRT release checks before it uses a cache; the scales are
float32 amax/127 values that no TensorRT version changes (docs/design.md, "Cache version policy").
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from trtq.cache.manifest import manifest_path, read_manifest, write_manifest
from trtq.cache.trt_format import decode_version, encode_version, parse_cache, read_cache
from trtq.errors import TrtqError
from trtq.fileio import atomic_write_text, sha256_file


def version_name(version: str | int) -> str:
    """'10.16' or 101600 -> '10.16.0'; a TrtqError for anything that is not a TensorRT version."""
    try:
        return ".".join(map(str, decode_version(encode_version(version))))
    except ValueError:
        raise TrtqError(f"'{version}' is not a TensorRT version like 10.16.1") from None


def retarget_text(text: str, version: str | int, source: str = "<cache>") -> str:
    """``text`` with its header's version replaced; the header's algorithm and every other line kept."""
    algorithm = parse_cache(text, source).algorithm
    first, newline, rest = text.partition("\n")
    ending = "\r" if first.endswith("\r") else ""
    return f"TRT-{encode_version(version_name(version))}-{algorithm}{ending}{newline}{rest}"


@dataclass(frozen=True)
class Retargeted:
    output: Path
    old_version: str
    new_version: str
    manifest: Path | None
    """The manifest written beside ``output`` (None when the cache had none)."""


def retarget_file(cache: Path, version: str, output: Path | None = None) -> Retargeted:
    """Rewrite the header into ``output`` (default: ``cache`` itself), atomically; the manifest
    follows with the new hash and target version, and keeps who made the scales."""
    target = version_name(version)
    out = output if output is not None else cache
    in_place = out.resolve() == cache.resolve()
    source_manifest = manifest_path(cache)
    if not in_place and out.resolve() == source_manifest.resolve():
        raise TrtqError(f"-o {out} is the manifest of {cache}, an input: choose another output path")
    if not in_place and manifest_path(out).resolve() == cache.resolve():
        raise TrtqError(f"-o {out} would put its manifest over {cache}, an input: choose another path")
    old = read_cache(cache).trt_version
    manifest = read_manifest(cache) if source_manifest.is_file() else None
    if manifest is not None and manifest.cache_sha256 != sha256_file(cache):
        raise TrtqError(
            f"{cache} was modified after its manifest was written (sha256 differs); retargeting "
            "would vouch for an unknown cache: recalibrate, or delete the manifest first"
        )
    atomic_write_text(out, retarget_text(cache.read_text(encoding="utf-8"), target, str(cache)))
    written = None
    if manifest is not None:
        written = write_manifest(out, replace(manifest, cache_sha256=sha256_file(out), trt_version=target))
    return Retargeted(out, old, target, written)
