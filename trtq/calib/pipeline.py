"""The ``trtq calibrate`` job: image list -> one calibration pass -> thresholds -> cache, manifest, report."""

from __future__ import annotations

import time

from trtq.calib.histogram import load_binning_in_background
from trtq.calib.outputs import CalibrationOutputs, save_outputs
from trtq.calib.run import CalibrationRun, ProgressCallback, collect_histograms
from trtq.config.loader import LoadedConfig
from trtq.data.from_config import calibration_entries
from trtq.data.image_list import ImageEntry
from trtq.fingerprint import fingerprint_config
from trtq.paths import calibration_outputs, check_outputs, config_inputs


def calibrate(
    config: LoadedConfig, on_batch: ProgressCallback | None = None, entries: list[ImageEntry] | None = None
) -> tuple[CalibrationRun, CalibrationOutputs]:
    """The whole ``trtq calibrate`` job for one config (``entries``: the image list, if already read)."""
    load_binning_in_background()
    entries = calibration_entries(config) if entries is None else entries
    check_outputs(calibration_outputs(config), config_inputs(config, entries, with_cache=False))
    fingerprint = fingerprint_config(config, entries)
    run = collect_histograms(config, entries, on_batch)
    started = time.perf_counter()
    run.compute_thresholds()
    run.timings["thresholds"] = (written := time.perf_counter()) - started
    outputs = save_outputs(config, run, fingerprint)
    run.timings["writing"] = time.perf_counter() - written
    return run, outputs
