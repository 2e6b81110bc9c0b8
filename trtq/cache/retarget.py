"""Point a cache's header at another TensorRT version, leaving every scale line byte-identical.

The header's version is what a TensorRT release checks before it uses a cache; the scales are
float32 amax/127 values that no TensorRT version changes (docs/design.md, "Cache version policy").
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

from trtq.cache.manifest import manifest_path, manifest_text, read_manifest, report_path
from trtq.cache.trt_format import CacheHeader, parse_cache, read_cache
from trtq.errors import TrtqError
from trtq.fileset import replace_set
from trtq.trt_versions import encode_version, version_name


def target_version(version: str | int) -> str:
    """major.minor.patch of ``version``; a TrtqError for anything that is not a TensorRT version."""
    try:
        return version_name(version)
    except ValueError as exc:
        raise TrtqError(str(exc)) from None


def retarget_bytes(data: bytes, version: str | int, source: str = "<cache>") -> bytes:
    """``data`` with its header's version replaced; the header's algorithm, its line end and every
    other byte kept (bytes, not text: reading text would turn CRLF line ends into LF)."""
    header = parse_cache(data, source).header
    current_version(header, source)
    first, newline, rest = data.partition(b"\n")
    ending = b"\r" if first.endswith(b"\r") else b""
    target = encode_version(target_version(version))
    return f"TRT-{target}-{header.algorithm}".encode() + ending + newline + rest


def current_version(header: CacheHeader, source: str) -> str:
    """The TensorRT version a header names; the older headers, which name none, are refused."""
    if header.trt_version is None:
        raise TrtqError(
            f"{source}: cannot retarget {header.format.value}: the header names no TensorRT version to "
            "rewrite, and no TensorRT is known to accept these scales under a TRT-<version>-<Algorithm> "
            "header; recalibrate with the TensorRT you deploy on"
        )
    return header.trt_version


@dataclass(frozen=True)
class Retargeted:
    output: Path
    old_version: str
    new_version: str
    manifest: Path | None
    """The manifest written beside ``output`` (None when the cache had none)."""
    removed_manifest: Path | None = None
    """A manifest beside ``output`` that vouched for the file it replaced, deleted."""


def retarget_file(cache: Path, version: str, output: Path | None = None) -> Retargeted:
    """Rewrite the header into ``output`` (default: ``cache`` itself); the cache and its manifest
    (new hash and target version, same provenance) are replaced as one set. The caller checks that
    ``output`` is not the cache's set (trtq/cli/preflight.py). A cache without a
    manifest gives an output without one: a manifest left beside ``output`` is deleted first."""
    target = target_version(version)
    out = output if output is not None else cache
    out_manifest = manifest_path(out)
    old = current_version(read_cache(cache).header, str(cache))  # errors of the cache itself first
    data = cache.read_bytes()
    manifest = read_manifest(cache) if manifest_path(cache).is_file() else None
    if manifest is not None and manifest.cache_sha256 != hashlib.sha256(data).hexdigest():
        raise TrtqError(
            f"{cache} was modified after its manifest was written (sha256 differs); retargeting "
            "would vouch for an unknown cache: recalibrate, or delete the manifest first"
        )
    data = retarget_bytes(data, target, str(cache))
    files = {out: data}
    removed = None
    if manifest is not None:
        updated = replace(manifest, cache_sha256=hashlib.sha256(data).hexdigest(), trt_version=target)
        files[out_manifest] = manifest_text(updated).encode("utf-8")
    elif out_manifest.is_file():
        # Deleted before the cache changes: an interruption leaves the old cache without a manifest
        # (provenance unknown), never a manifest vouching for a cache it did not describe.
        out_manifest.unlink()
        removed = out_manifest
    if out.resolve() != cache.resolve():
        # The report describes the scales, which do not change: it goes along, and a report of
        # another calibration beside -o would otherwise stay in the new set.
        report, out_report = report_path(cache), report_path(out)
        if report.is_file():
            files[out_report] = report.read_bytes()
        elif out_report.is_file():
            out_report.unlink()
    replace_set(files)
    return Retargeted(out, old, target, out_manifest if manifest is not None else None, removed)
