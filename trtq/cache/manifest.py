"""The manifest beside each cache: its provenance, so a stale cache is refused instead of reused silently."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from trtq import __version__
from trtq.data.image_list import ImageEntry
from trtq.errors import TrtqError
from trtq.fileio import atomic_write_text, sha256_file
from trtq.fileset import finish_pending
from trtq.fingerprint import Fingerprint

_T = TypeVar("_T")
MANIFEST_SUFFIX = ".manifest.json"
REPORT_SUFFIX = ".report.json"
FORMAT = "trtq-cache-manifest/1"


def manifest_path(cache_path: Path) -> Path:
    return cache_path.with_name(cache_path.name + MANIFEST_SUFFIX)


def report_path(cache_path: Path) -> Path:
    return cache_path.with_name(cache_path.name + REPORT_SUFFIX)


@dataclass(frozen=True)
class Manifest:
    fingerprint: Fingerprint
    cache_sha256: str
    algorithm: str
    batch_size: int
    trt_version: str
    """The TensorRT version the cache header targets (``trtq cache retarget`` changes it)."""
    trtq_version: str = __version__
    scales_by: str = f"trtq {__version__}"
    """Who computed the scales: trtq on the CPU, or a TensorRT calibrator (with its version).
    Provenance only: scales do not depend on the TensorRT version (docs/design.md)."""
    report_sha256: str | None = None
    """The calibration report written with the cache: a report from another run is told apart."""
    chosen_by: str | None = None
    """Why ``algorithm`` holds the scales when the config says ``algorithm: auto`` (which the
    fingerprint records): the held-out scores that chose it."""

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "fingerprint": self.fingerprint.to_json(),
            "config_fingerprint": self.fingerprint.digest,
            "model_sha256": self.fingerprint.model_sha256,
            "images": {"sha256": self.fingerprint.images_sha256, "count": len(self.fingerprint.image_hashes)},
            "cache_sha256": self.cache_sha256,
            "algorithm": self.algorithm,
            "batch_size": self.batch_size,
            "trt_version": self.trt_version,
            "trtq_version": self.trtq_version,
            "scales_by": self.scales_by,
            "report_sha256": self.report_sha256,
            "chosen_by": self.chosen_by,
        }

    def mismatches(
        self, cache_path: Path, current: Fingerprint, entries: Sequence[ImageEntry] = ()
    ) -> list[str]:
        """Why this cache must not be reused for ``current``; empty when it matches.

        The TensorRT version is not compared: it changes the header, never the scales, and the
        header is rewritten for the TensorRT that reads the cache (docs/design.md).
        """
        reasons = []
        if not cache_path.is_file():
            return [f"{cache_path}: cache file is missing"]
        actual = sha256_file(cache_path)
        if actual != self.cache_sha256:
            reasons.append(
                f"{cache_path}: cache file was modified after it was written (sha256 differs from manifest)"
            )
        report = report_path(cache_path)
        if self.report_sha256 is not None and report.is_file() and sha256_file(report) != self.report_sha256:
            reasons.append(f"{report}: report is not the one written with this cache (sha256 differs)")
        reasons.extend(self.fingerprint.differences(current, entries))
        return reasons


def write_manifest(cache_path: Path, manifest: Manifest) -> Path:
    path = manifest_path(cache_path)
    atomic_write_text(path, manifest_text(manifest))
    return path


def manifest_text(manifest: Manifest) -> str:
    return json.dumps(manifest.to_json(), indent=2) + "\n"


def read_manifest(cache_path: Path) -> Manifest:
    path = manifest_path(cache_path)
    finish_pending(cache_path)  # the cache is the set's first file: its journal covers the manifest
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TrtqError(
            f"{path}: no manifest beside the cache, so nothing says what it was made from; recalibrate"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TrtqError(f"{path}: unreadable manifest: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise TrtqError(f"{path}: not a trtq cache manifest (expected format {FORMAT})")
    try:
        return Manifest(
            fingerprint=Fingerprint.from_json(data["fingerprint"]),
            cache_sha256=_field(data, "cache_sha256", str),
            algorithm=_field(data, "algorithm", str),
            batch_size=_field(data, "batch_size", int),
            trt_version=_field(data, "trt_version", str),
            trtq_version=_field(data, "trtq_version", str),
            report_sha256=None if data.get("report_sha256") is None else _field(data, "report_sha256", str),
            scales_by=data.get("scales_by", "unknown (manifest predates the field)"),
            chosen_by=None if data.get("chosen_by") is None else _field(data, "chosen_by", str),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise TrtqError(f"{path}: manifest is missing or has a bad field: {exc}") from None


def _field(data: dict[str, Any], key: str, kind: type[_T]) -> _T:
    """``data[key]`` if it really is a ``kind`` (a JSON true is not the integer 1)."""
    value = data[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(f"'{key}' must be {kind.__name__}, got {value!r}")
    return value
