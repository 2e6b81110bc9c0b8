"""The ``trtq calibrate`` job: image list -> one calibration pass -> thresholds -> every algorithm
scored on held-out images (trtq/calibrate/auto.py) -> cache, manifest, report."""

from __future__ import annotations

import time

from trtq.calib.histogram import load_binning_in_background
from trtq.calib.run import CalibrationRun, ProgressCallback, collect_histograms
from trtq.calibrate.auto import Evaluation, describe_holdout, evaluate, held_batches
from trtq.calibrate.outputs import CalibrationOutputs, save_outputs
from trtq.compare.declared import check_declared_names
from trtq.config.loader import LoadedConfig, config_error
from trtq.data.from_config import batch_source, calibration_entries, eval_entries
from trtq.data.image_list import ImageEntry
from trtq.fingerprint import fingerprint_config
from trtq.paths import calibration_outputs, check_outputs, config_inputs


def calibrate(
    config: LoadedConfig, on_batch: ProgressCallback | None = None, entries: list[ImageEntry] | None = None
) -> tuple[CalibrationRun, CalibrationOutputs]:
    """The whole ``trtq calibrate`` job for one config (``entries``: the image list, if already read)."""
    load_binning_in_background()
    calibration = config.spec.calibration
    entries = calibration_entries(config) if entries is None else entries
    scoring = eval_entries(config)
    check_outputs(
        calibration_outputs(config), config_inputs(config, [*entries, *(scoring or [])], with_cache=False)
    )
    fingerprint = fingerprint_config(config, entries)
    batches = batch_source(config, entries).expected_batches
    held = 0 if scoring is not None else held_batches(batches, calibration.holdout)
    if calibration.algorithm == "auto" and scoring is None and held == 0:
        raise config_error(
            config,
            ("calibration", "algorithm"),
            f"auto chooses on images it did not calibrate on, and none are left: {batches} batch(es), "
            f"holdout {calibration.holdout}; list more images, raise calibration.holdout or give "
            "calibration.eval_images (--images)",
        )
    check_declared_names(config)
    run = collect_histograms(config, entries, on_batch, checkpoint=batches - held if held else None)
    started = time.perf_counter()
    run.compute_thresholds()
    run.timings["thresholds"] = (scored := time.perf_counter()) - started
    evaluation: Evaluation | None = None
    if scoring is not None:
        where = (
            f"{len(scoring)} images of calibration.eval_images (calibrated on the {run.stats.used} listed)"
        )
        evaluation = evaluate(config, run, scoring, where)
    elif run.prefix is not None:
        run.prefix.compute_thresholds()
        where = describe_holdout(len(run.held), run.prefix.stats.used)
        evaluation = evaluate(config, run.prefix, run.held, where)
    if evaluation is not None:
        run.timings["evaluation"] = time.perf_counter() - scored
    chosen = calibration.algorithm
    if chosen == "auto":
        if evaluation is None:
            raise config_error(
                config, ("calibration", "algorithm"), "auto: no algorithm has finite scales on these images"
            )
        chosen = evaluation.best
    written = time.perf_counter()
    outputs = save_outputs(config, run, fingerprint, chosen, evaluation)
    run.timings["writing"] = time.perf_counter() - written
    return run, outputs
