"""Files ``trtq tune`` writes beside ``-o``: the Q/DQ model for explicit builds, and for TensorRT 10
implicit builds the bias-corrected FP32 model, a calibration cache with the chosen scales and a config
that uses them (the input config with ``model.path``, ``calibration.cache``, ``build.layer_precisions``
and ``qdq.exclude`` replaced)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from trtq.cache.manifest import Manifest, manifest_path, manifest_text
from trtq.cache.trt_format import format_cache, make_cache
from trtq.calibrate.outputs import header_algorithm
from trtq.config.loader import LoadedConfig
from trtq.config.schema import TrtqConfig
from trtq.data.image_list import ImageEntry
from trtq.fileio import sha256_bytes, strict_json
from trtq.fileset import replace_set
from trtq.fingerprint import fingerprint_config
from trtq.tune.pipeline import TuneResult


@dataclass(frozen=True)
class TunePaths:
    qdq: Path
    corrected: Path
    cache: Path
    config: Path
    json: Path

    def all(self) -> list[Path]:
        return [self.qdq, self.corrected, self.cache, self.config, self.json]


def tune_paths(output: Path) -> TunePaths:
    """``tuned.qdq.onnx`` -> ``tuned.fp32.onnx``, ``tuned.cache``, ``tuned.yaml``, ``tuned.tune.json``."""
    stem = output.name
    for suffix in (".onnx", ".qdq"):
        stem = stem.removesuffix(suffix)
    folder = output.parent
    return TunePaths(
        output,
        folder / f"{stem}.fp32.onnx",
        folder / f"{stem}.cache",
        folder / f"{stem}.yaml",
        folder / f"{stem}.tune.json",
    )


def overlay_config(
    config: LoadedConfig, result: TuneResult, paths: TunePaths, images: Path, count: int
) -> dict[str, Any]:
    """The input config, paths made absolute, pointing at the corrected model, the tuned cache and the
    tuning images it was made from."""
    spec = config.spec.model_dump(mode="json", exclude_none=True)
    spec["model"]["path"] = str(paths.corrected.resolve())
    spec["calibration"]["images"] = str(images.resolve())
    spec["calibration"]["max_images"] = count
    spec["calibration"]["cache"] = str(paths.cache.resolve())
    build = spec.setdefault("build", {})
    for key in ("engine", "timing_cache"):
        if build.get(key):
            build[key] = str(config.resolve(build[key]).resolve())
    build["layer_precisions"] = {
        **build.get("layer_precisions", {}),
        **dict.fromkeys(result.float_nodes, "fp16"),
    }
    qdq = spec.setdefault("qdq", {})
    qdq["exclude"] = sorted({*qdq.get("exclude", []), *result.float_nodes})
    return spec


def write_outputs(
    config: LoadedConfig,
    result: TuneResult,
    paths: TunePaths,
    images: Path,
    entries: Sequence[ImageEntry],
    summary: dict[str, Any],
) -> None:
    """All files, replaced as one set (trtq/fileset.py): an interruption leaves the old run's files or
    this run's, never a new model beside an old config. The cache gets a manifest for the written
    config, so ``trtq build`` reuses it instead of recalibrating; it fingerprints the corrected
    model's bytes, which are not on disk until the set is."""
    corrected = result.corrected.SerializeToString()
    calibration = config.spec.calibration
    cache_bytes = format_cache(
        make_cache(result.scales, header_algorithm(config), calibration.trt_version)
    ).encode("utf-8")
    header = (
        f"# trtq tune of {config.source}: TensorRT 10 implicit INT8 with the tuned scales and FP16 layers.\n"
        f"# Explicit builds (int8-qdq, TensorRT 11) use {paths.qdq.name} instead.\n"
    )
    overlay = overlay_config(config, result, paths, images, len(entries))
    tuned_config = LoadedConfig(source=paths.config, spec=TrtqConfig.model_validate(overlay))
    # The input config's fingerprint with the corrected model's hash: the two configs differ only in
    # paths, and the corrected model (serialized whole) has no external data.
    fingerprint = replace(
        fingerprint_config(config, entries), model_sha256=sha256_bytes(corrected), external_data={}
    )
    manifest = Manifest(
        fingerprint=fingerprint,
        cache_sha256=sha256_bytes(cache_bytes),
        algorithm=tuned_config.spec.calibration.algorithm,
        batch_size=tuned_config.batch_size,
        trt_version=tuned_config.spec.calibration.trt_version,
    )
    replace_set(
        {
            paths.qdq: result.qdq.SerializeToString(),
            paths.corrected: corrected,
            paths.cache: cache_bytes,
            paths.config: (header + yaml.safe_dump(overlay, sort_keys=False)).encode("utf-8"),
            paths.json: strict_json(summary).encode("utf-8"),
            manifest_path(paths.cache): manifest_text(manifest).encode("utf-8"),
        }
    )
