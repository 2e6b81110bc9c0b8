"""The manifest beside each cache: its provenance, so a stale cache is refused instead of reused silently."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trtq import __version__
from trtq.data.image_list import ImageEntry
from trtq.errors import TrtqError
from trtq.fileio import atomic_write_text, sha256_file
from trtq.fingerprint import Fingerprint

MANIFEST_SUFFIX = ".manifest.json"
FORMAT = "trtq-cache-manifest/1"


def manifest_path(cache_path: Path) -> Path:
    return cache_path.with_name(cache_path.name + MANIFEST_SUFFIX)


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
        reasons.extend(self.fingerprint.differences(current, entries))
        return reasons


def write_manifest(cache_path: Path, manifest: Manifest) -> Path:
    path = manifest_path(cache_path)
    atomic_write_text(path, json.dumps(manifest.to_json(), indent=2) + "\n")
    return path


def read_manifest(cache_path: Path) -> Manifest:
    path = manifest_path(cache_path)
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
            cache_sha256=data["cache_sha256"],
            algorithm=data["algorithm"],
            batch_size=int(data["batch_size"]),
            trt_version=data["trt_version"],
            trtq_version=data["trtq_version"],
            scales_by=data.get("scales_by", "unknown (manifest predates the field)"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise TrtqError(f"{path}: manifest is missing or has a bad field: {exc}") from None
