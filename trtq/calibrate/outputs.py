"""What ``trtq calibrate`` writes: the cache, its JSON report, and the manifest recording both."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trtq import __version__
from trtq.cache.headers import header_for
from trtq.cache.manifest import Manifest, manifest_path, manifest_text, report_path
from trtq.cache.trt_format import format_cache, make_cache
from trtq.calib.run import CalibrationRun
from trtq.calibrate.auto import Evaluation
from trtq.config.loader import LoadedConfig
from trtq.config.schema import ALGORITHMS, Algorithm
from trtq.fileio import sha256_bytes, strict_json
from trtq.fileset import replace_set
from trtq.fingerprint import Fingerprint
from trtq.numeric import scale_from_amax


def header_algorithm(config: LoadedConfig, algorithm: Algorithm | None = None) -> str:
    """The header of a cache of ``algorithm``'s scales (default: the config's; tuned scales under
    ``algorithm: auto`` are no one algorithm's and get EntropyCalibration2, trtexec's calibrator)."""
    calibration = config.spec.calibration
    if calibration.cache_header != "auto":
        return calibration.cache_header
    chosen = algorithm or calibration.algorithm
    return header_for("entropy" if chosen == "auto" else chosen)


@dataclass(frozen=True)
class CalibrationOutputs:
    cache: Path
    manifest: Path
    report: Path
    algorithm: Algorithm
    """The algorithm whose scales the cache holds (auto's choice, or the configured one)."""
    evaluation: Evaluation | None = None


def save_outputs(
    config: LoadedConfig,
    run: CalibrationRun,
    fingerprint: Fingerprint,
    algorithm: Algorithm,
    evaluation: Evaluation | None = None,
) -> CalibrationOutputs:
    """Cache (``algorithm``'s scales), report and manifest (which records both hashes) replaced as
    one set (trtq/fileset.py)."""
    calibration = config.spec.calibration
    cache_path = config.cache_path
    cache = make_cache(run.scales(algorithm), header_algorithm(config, algorithm), calibration.trt_version)
    cache_bytes = format_cache(cache).encode("utf-8")
    report = report_path(cache_path)
    report_bytes = strict_json(build_report(config, run, fingerprint, algorithm, evaluation)).encode("utf-8")
    manifest = Manifest(
        fingerprint=fingerprint,
        cache_sha256=sha256_bytes(cache_bytes),
        algorithm=algorithm,
        batch_size=config.batch_size,
        trt_version=calibration.trt_version,
        report_sha256=sha256_bytes(report_bytes),
        chosen_by=None
        if calibration.algorithm != "auto" or evaluation is None
        else f"auto: {evaluation.reason()}",
    )
    manifest_file = manifest_path(cache_path)
    # The manifest goes last: a reader that sees new files beside an old manifest finds the hashes differ.
    manifest_bytes = manifest_text(manifest).encode("utf-8")
    replace_set({cache_path: cache_bytes, report: report_bytes, manifest_file: manifest_bytes})
    return CalibrationOutputs(cache_path, manifest_file, report, algorithm, evaluation)


def build_report(
    config: LoadedConfig,
    run: CalibrationRun,
    fingerprint: Fingerprint,
    algorithm: Algorithm,
    evaluation: Evaluation | None = None,
) -> dict[str, Any]:
    tensors = {}
    for name, histogram in run.histograms.items():
        tensors[name] = {
            "max_abs": histogram.max_abs,
            "histogram_range": histogram.range,
            "range_doublings": histogram.doublings,
            "values": histogram.total,
            "amax": {algorithm: float(run.amax(name, algorithm)) for algorithm in ALGORITHMS},
            "scale": {
                algorithm: float(scale_from_amax(run.amax(name, algorithm))) for algorithm in ALGORITHMS
            },
            "clipped": {algorithm: run.clipped(name, algorithm) for algorithm in ALGORITHMS},
            "amax_from": "preprocessing" if name in run.known else "histogram",
        }
    stats = run.stats
    return {
        "config": str(config.source),
        "config_fingerprint": fingerprint.digest,
        "trtq_version": __version__,
        "algorithm": config.spec.calibration.algorithm,
        "cache_algorithm": algorithm,
        "evaluation": None if evaluation is None else evaluation.to_json(),
        "percentile": run.percentile,
        "images": {
            "used": stats.used,
            "batches": stats.batches,
            "dropped": stats.dropped,
            "wrapped": stats.wrapped,
            "skipped": [
                {"image": str(e.entry.path), "line": e.entry.line, "reason": e.reason} for e in stats.skipped
            ],
        },
        "seconds": round(run.seconds, 3),
        "tensors": tensors,
    }
