"""Where Q/DQ scales come from: a calibration cache (TensorRT's or trtq's), checked against the model.
Q/DQ export never calibrates: a command that needs fresh scales calibrates first (trtq.compare.algorithms)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from trtq.cache.coverage import describe_missing, missing_tensors
from trtq.cache.manifest import manifest_path, read_manifest
from trtq.cache.trt_format import read_cache
from trtq.config.loader import LoadedConfig
from trtq.data.from_config import calibration_entries
from trtq.errors import TrtqError
from trtq.fileio import sha256_file
from trtq.fingerprint import fingerprint_config
from trtq.model.files import load_onnx
from trtq.model.index import activation_tensors
from trtq.qdq.export import QdqResult, export_qdq


def cache_scales(
    config: LoadedConfig, cache: Path | None, warn: Callable[[str], None] | None = None
) -> tuple[Path, dict[str, float]]:
    """The scales of ``cache`` (default: the config's), refused when they are another model's."""
    path = cache or config.cache_path
    if not path.is_file():
        raise TrtqError(f"{path}: no calibration cache; run `trtq calibrate {config.source}` or pass --cache")
    scales = read_cache(path).scales
    check_coverage(config, path, scales, warn)
    if warn is not None:
        warn_if_stale(config, path, warn)
    return path, scales


def warn_if_stale(config: LoadedConfig, path: Path, warn: Callable[[str], None]) -> None:
    """Say why a cache with a manifest no longer matches the config (as ``trtq cache check`` would).

    A warning, not an error: comparing a cache made for other images or preprocessing can be the
    point; using one without knowing cannot."""
    if not manifest_path(path).is_file():
        return
    if config.spec.calibration.images is None:
        warn(f"{path} has a manifest, but {config.source} has no calibration.images to check it against")
        return
    entries = calibration_entries(config)
    reasons = read_manifest(path).mismatches(path, fingerprint_config(config, entries), entries)
    if reasons:
        warn(
            f"{path} does not match {config.source} (`trtq cache check` lists the same):\n  - "
            + "\n  - ".join(reasons)
        )


def check_coverage(
    config: LoadedConfig, path: Path, scales: Mapping[str, float], warn: Callable[[str], None] | None = None
) -> None:
    """Error when the cache is another model's: its manifest names other model bytes, or it covers
    few of the model's activations (generic exporter names can match across models); ``warn`` lists
    the missing ones."""
    if manifest_path(path).is_file():
        made_for, model = read_manifest(path).fingerprint.model_sha256, sha256_file(config.model_path)
        if made_for != model:
            raise TrtqError(
                f"{path}: its manifest says it was made for another model (sha256 {made_for[:16]}, "
                f"{config.model_path.name} is {model[:16]}); recalibrate, or delete the manifest to use "
                "its scales anyway"
            )
    missing = missing_tensors(path, scales, list(activation_tensors(load_onnx(config.model_path))))
    if missing and warn is not None:
        warn(describe_missing(path, missing))


def qdq_from_scales(config: LoadedConfig, scales: dict[str, float]) -> QdqResult:
    return export_qdq(load_onnx(config.model_path), scales, config.spec.qdq.exclude)
