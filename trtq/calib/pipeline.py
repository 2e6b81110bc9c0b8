"""A config -> per-tensor histograms (one streamed pass) -> thresholds -> cache, manifest and JSON report."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trtq import __version__
from trtq.cache.headers import header_for
from trtq.cache.manifest import REPORT_SUFFIX, Manifest, manifest_path, manifest_text
from trtq.cache.trt_format import format_cache, make_cache
from trtq.calib.algorithms import amax_from, mse_amaxes, scale_from_amax
from trtq.calib.collect import ActivationCollector
from trtq.calib.histogram import NonFiniteError, TrtHistogram, update_batch
from trtq.config.loader import LoadedConfig
from trtq.config.schema import ALGORITHMS, Algorithm
from trtq.data.batches import Batch, BatchSource, BatchStats
from trtq.data.image_list import ImageEntry, read_image_list
from trtq.data.preprocess import Preprocessor
from trtq.errors import TrtqError
from trtq.fileio import sha256_bytes
from trtq.fileset import replace_set
from trtq.fingerprint import Fingerprint, fingerprint_config
from trtq.paths import calibration_outputs, check_outputs, config_inputs

ProgressCallback = Callable[[Batch], None]
HISTOGRAM_THREADS = 2
WIDESPREAD_DOUBLINGS = 0.25
"""Share of tensors whose histogram range doubled above which calibrate warns."""


@dataclass
class CalibrationRun:
    histograms: dict[str, TrtHistogram]
    stats: BatchStats
    percentile: float
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per stage: decode (waiting for images), model, statistics, then thresholds, writing."""
    _amax: dict[tuple[str, Algorithm], np.float32] = field(default_factory=dict)

    def amax(self, tensor: str, algorithm: Algorithm) -> np.float32:
        key = (tensor, algorithm)
        if key not in self._amax:
            self._amax[key] = amax_from(self.histograms[tensor], algorithm, self.percentile)
        return self._amax[key]

    def compute_thresholds(self) -> None:
        """Every algorithm's amax for every tensor (MSE for all tensors in one matrix product)."""
        names = list(self.histograms)
        self._amax.update(
            ((name, "mse"), amax)
            for name, amax in zip(names, mse_amaxes([self.histograms[n] for n in names]), strict=True)
        )
        for name in names:
            for algorithm in ALGORITHMS:
                self.amax(name, algorithm)

    def scales(self, algorithm: Algorithm) -> dict[str, float]:
        return {name: float(scale_from_amax(self.amax(name, algorithm))) for name in self.histograms}

    def doubling_warning(self, batch_size: int) -> str | None:
        """A warning when many histograms grew after the first batch: each doubling halves the
        resolution entropy searches, and the result depends on the order of the images."""
        doubled = sum(1 for h in self.histograms.values() if h.doublings > 0)
        if not self.histograms or doubled <= WIDESPREAD_DOUBLINGS * len(self.histograms):
            return None
        return (
            f"the histogram range doubled after the first batch on {doubled} of {len(self.histograms)} "
            f"tensors (batch size {batch_size}): later images exceeded the first batch's max |x|, so "
            "entropy thresholds depend on image order and lose resolution; calibrate with a larger "
            "batch (the input's batch dim) and a shuffled image list"
        )


def calibration_entries(config: LoadedConfig) -> list[ImageEntry]:
    """The config's image list, with the config key named when the list itself is at fault."""
    try:
        return read_image_list(config.images_path, config.spec.calibration.max_images)
    except TrtqError as exc:
        raise TrtqError(f"{exc} (calibration.images in {config.source})") from None


def batch_source(config: LoadedConfig, entries: list[ImageEntry]) -> BatchSource:
    height, width = config.image_size
    calibration = config.spec.calibration
    return BatchSource(
        entries=entries,
        preprocessor=Preprocessor(config.spec.preprocess, height, width),
        batch_size=config.batch_size,
        last_batch=calibration.last_batch,
        on_bad_image=calibration.on_bad_image,
        workers=calibration.workers,
    )


def collect_histograms(
    config: LoadedConfig, entries: list[ImageEntry], on_batch: ProgressCallback | None = None
) -> CalibrationRun:
    """Stream every batch through ONNX Runtime; each activation updates its histogram and is dropped."""
    collector = ActivationCollector(
        config.model_path, config.image_input.name, config.image_input.calibration_shape
    )
    names = collector.tensor_names
    histograms = [TrtHistogram() for _ in names]
    source = batch_source(config, entries)
    timings = dict.fromkeys(("decode", "model", "statistics"), 0.0)
    started = time.perf_counter()
    batches = iter(source)
    # Each histogram gets one update per batch, batches in order; within a batch the values are split
    # over threads (NumPy releases the GIL) and the counts added, so the result is the same.
    with ThreadPoolExecutor(max_workers=HISTOGRAM_THREADS, thread_name_prefix="trtq-hist") as pool:
        while True:
            mark = time.perf_counter()
            batch = next(batches, None)
            timings["decode"] += (now := time.perf_counter()) - mark
            if batch is None:
                break
            activations = dict(collector.run(batch.data))
            timings["model"] += (mark := time.perf_counter()) - now
            try:
                update_batch(
                    histograms, names, [activations[name] for name in names], pool, HISTOGRAM_THREADS
                )
            except NonFiniteError as exc:
                raise TrtqError(
                    f"tensor '{exc.tensor}' has NaN or infinite values on the batch starting at "
                    f"{batch.entries[0].where}; check preprocess (scale, mean, std) against the model"
                ) from None
            del activations
            timings["statistics"] += time.perf_counter() - mark
            if on_batch is not None:
                on_batch(batch)
    return CalibrationRun(
        dict(zip(names, histograms, strict=True)),
        source.stats,
        config.spec.calibration.percentile,
        time.perf_counter() - started,
        timings=timings,
    )


def header_algorithm(config: LoadedConfig) -> str:
    calibration = config.spec.calibration
    if calibration.cache_header != "auto":
        return calibration.cache_header
    return header_for(calibration.algorithm)


@dataclass(frozen=True)
class CalibrationOutputs:
    cache: Path
    manifest: Path
    report: Path


def report_path(cache_path: Path) -> Path:
    return cache_path.with_name(cache_path.name + REPORT_SUFFIX)


def save_outputs(config: LoadedConfig, run: CalibrationRun, fingerprint: Fingerprint) -> CalibrationOutputs:
    """Cache, report and manifest (which records both hashes) replaced as one set (trtq/fileset.py)."""
    calibration = config.spec.calibration
    cache_path = config.cache_path
    cache = make_cache(run.scales(calibration.algorithm), header_algorithm(config), calibration.trt_version)
    cache_bytes = format_cache(cache).encode("utf-8")
    report = report_path(cache_path)
    report_bytes = (json.dumps(build_report(config, run, fingerprint), indent=1) + "\n").encode("utf-8")
    manifest = Manifest(
        fingerprint=fingerprint,
        cache_sha256=sha256_bytes(cache_bytes),
        algorithm=calibration.algorithm,
        batch_size=config.batch_size,
        trt_version=calibration.trt_version,
        report_sha256=sha256_bytes(report_bytes),
    )
    manifest_file = manifest_path(cache_path)
    # The manifest goes last: a reader that sees new files beside an old manifest finds the hashes differ.
    manifest_bytes = manifest_text(manifest).encode("utf-8")
    replace_set({cache_path: cache_bytes, report: report_bytes, manifest_file: manifest_bytes})
    return CalibrationOutputs(cache_path, manifest_file, report)


def build_report(config: LoadedConfig, run: CalibrationRun, fingerprint: Fingerprint) -> dict[str, Any]:
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
        }
    stats = run.stats
    return {
        "config": str(config.source),
        "config_fingerprint": fingerprint.digest,
        "trtq_version": __version__,
        "algorithm": config.spec.calibration.algorithm,
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


def calibrate(
    config: LoadedConfig, on_batch: ProgressCallback | None = None, entries: list[ImageEntry] | None = None
) -> tuple[CalibrationRun, CalibrationOutputs]:
    """The whole ``trtq calibrate`` job for one config (``entries``: the image list, if already read)."""
    entries = calibration_entries(config) if entries is None else entries
    check_outputs(calibration_outputs(config), config_inputs(config, entries))
    fingerprint = fingerprint_config(config, entries)
    run = collect_histograms(config, entries, on_batch)
    started = time.perf_counter()
    run.compute_thresholds()
    run.timings["thresholds"] = (written := time.perf_counter()) - started
    outputs = save_outputs(config, run, fingerprint)
    run.timings["writing"] = time.perf_counter() - written
    return run, outputs
