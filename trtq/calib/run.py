"""One streamed calibration pass: every batch through the FP32 model, each activation into its
TensorRT-rule histogram and dropped; every algorithm's threshold read from those histograms."""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from trtq.calib.algorithms import amax_from, mse_amaxes
from trtq.calib.collect import ActivationCollector
from trtq.calib.histogram import NonFiniteError, TrtHistogram, load_binning_in_background, update_batch
from trtq.config.loader import LoadedConfig
from trtq.config.schema import ALGORITHMS, Algorithm
from trtq.data.batches import Batch, BatchStats
from trtq.data.from_config import batch_source
from trtq.data.image_list import ImageEntry
from trtq.data.preprocess import value_range_amax
from trtq.errors import TrtqError
from trtq.numeric import scale_from_amax
from trtq.text import first_few

ProgressCallback = Callable[[Batch], None]


def usable_cores(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """The cores this process may run on (taskset, cpusets), capped by a cgroup v2 CPU quota
    (``docker --cpus``): more threads than the quota allows only queue."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS has no sched_getaffinity
        cores = os.cpu_count() or 1
    try:
        quota, period = cpu_max.read_text().split()[:2]
    except (OSError, ValueError):  # no cgroup v2 file: no quota to respect
        return cores
    if quota == "max":
        return cores
    try:
        return max(1, min(cores, math.ceil(int(quota) / int(period))))
    except (ValueError, ZeroDivisionError):
        return cores


HISTOGRAM_THREADS = usable_cores()
"""Binning runs between ONNX Runtime's batches, so it may use every core, as ONNX Runtime does."""
HISTOGRAM_TASKS = 16 * HISTOGRAM_THREADS
"""Tasks per batch: many more than threads, so a thread that loses its core for a while (another
process, the decoding threads) does not hold the batch up; the others take its share."""
CLIPPED_RATIO = 0.5
CLIPPED_SHARE = 0.001
"""A threshold below this share of the tensor's max that clips at least this share of its values
is reported: outliers are rarer than 1 in 1000, so more than that above the threshold is signal."""
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
    in_control_flow: list[str] = field(default_factory=list)
    """Tensors inside control flow trtq cannot fold (a data-dependent If, a Loop): not calibrated."""
    shape_only: set[str] = field(default_factory=set)
    """Tensors computed from the input's shape alone: the same values on every image."""
    known: dict[str, np.float32] = field(default_factory=dict)
    """Thresholds known without a histogram, the same for every algorithm: the model input's range
    as the preprocessing gives it (a histogram of letterboxed images puts entropy's pick on the
    border's spike)."""
    _amax: dict[tuple[str, Algorithm], np.float32] = field(default_factory=dict)
    prefix: CalibrationRun | None = None
    """With a checkpoint: the histograms as they were after the first batches, exactly what
    calibrating on those batches alone gives (TensorRT's histograms only ever see batches in order)."""
    held: list[ImageEntry] = field(default_factory=list)
    """The images of the batches after the checkpoint (no wrapped repeats): never in ``prefix``."""

    def amax(self, tensor: str, algorithm: Algorithm) -> np.float32:
        if tensor in self.known:
            return self.known[tensor]
        key = (tensor, algorithm)
        if key not in self._amax:
            self._amax[key] = amax_from(self.histograms[tensor], algorithm, self.percentile)
        return self._amax[key]

    def clipped(self, tensor: str, algorithm: Algorithm) -> float:
        """Share of the tensor's calibration values above its threshold (at least: counted from
        the bins that lie wholly above it)."""
        histogram = self.histograms[tensor]
        total, amax = histogram.total, float(self.amax(tensor, algorithm))
        if total == 0 or not amax < histogram.range:  # an infinite threshold clips nothing either
            return 0.0
        first_above = math.ceil(amax / histogram.bin_width)
        return float(histogram.counts[first_above:].sum()) / total

    def clipping_warning(self, algorithm: Algorithm) -> str | None:
        """A warning naming the tensors whose ``algorithm`` threshold clips a large share of values
        far below their max: the spikes at non-zero values that pull entropy's pick down (a
        per-channel constant added after an activation, say) and can silence a whole model."""
        heavy = []
        for name, histogram in self.histograms.items():
            if name in self.known or histogram.max_abs == 0.0:
                continue
            ratio = float(self.amax(name, algorithm)) / histogram.max_abs
            share = self.clipped(name, algorithm)
            if ratio < CLIPPED_RATIO and share >= CLIPPED_SHARE:
                heavy.append((share, ratio, name))
        if not heavy:
            return None
        share, ratio, name = max(heavy)
        return (
            f"{algorithm} clips {len(heavy)} of {len(self.histograms)} tensors to under "
            f"{CLIPPED_RATIO:.0%} of their max with at least {CLIPPED_SHARE:.1%} of their values above "
            f"the threshold; worst '{name}': threshold {ratio:.0%} of max, {share:.1%} of values clipped. "
            "Check the task agreement of the algorithms (calibrate's table, or trtq compare "
            "--algorithms all) before using this cache"
        )

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
        """Every tensor's scale under ``algorithm``; an infinite one (a threshold beyond float32's
        largest value) is an error naming the tensor: no INT8 scale can represent it."""
        scales = {name: float(scale_from_amax(self.amax(name, algorithm))) for name in self.histograms}
        for name, scale in scales.items():
            if not math.isfinite(scale):
                histogram = self.histograms[name]
                doubled = f", {histogram.doublings} range doubling(s)" if histogram.doublings else ""
                raise TrtqError(
                    f"tensor '{name}' has no finite {algorithm} threshold: it lies beyond float32's "
                    f"largest value (max |x| {histogram.max_abs:.3g}, histogram range "
                    f"{histogram.range:.3g}{doubled}); check the preprocessing and the model"
                )
        return scales

    def zero_warning(self) -> str | None:
        """A warning naming the tensors that were zero on every calibration image: their scale is 0,
        which no INT8 value can use (all-black images, a dead branch, a wrong preprocessing). Tensors
        computed from the input's shape alone are the same on any image and are not named."""
        zero = [
            name
            for name, histogram in self.histograms.items()
            if histogram.max_abs == 0.0 and name not in self.shape_only
        ]
        if not zero:
            return None
        shown = first_few(zero, quoted=True)
        return (
            f"{len(zero)} of {len(self.histograms)} tensors were zero on every calibration image, so "
            f"their scale is 0 ({shown}); check the images and the preprocessing"
        )

    def doubling_warning(self, batch_size: int) -> str | None:
        """A warning when many histograms grew after the first batch: each doubling halves the
        resolution entropy searches, and the result depends on the order of the images."""
        doubled = sum(1 for h in self.histograms.values() if h.doublings > 0)
        if not self.histograms or doubled <= WIDESPREAD_DOUBLINGS * len(self.histograms):
            return None
        return (
            f"the histogram range doubled after the first batch on {doubled} of {len(self.histograms)} "
            f"tensors (batch size {batch_size}): later images exceeded the first batch's max |x|, so "
            "the entropy, percentile and mse thresholds depend on image order and lose resolution; "
            "shuffle the image list once (keep that order), and use a larger batch if the model "
            "takes one (the input's batch dim)"
        )


def collect_histograms(
    config: LoadedConfig,
    entries: list[ImageEntry],
    on_batch: ProgressCallback | None = None,
    checkpoint: int | None = None,
    *,
    as_tensorrt: bool = False,
) -> CalibrationRun:
    """Stream every batch through ONNX Runtime; each activation updates its histogram and is dropped.

    With ``checkpoint``, the run also keeps a copy of the histograms after that many batches
    (``prefix``) and the images of the later batches (``held``); the full histograms are the same
    as without it. The input's threshold is the preprocessing's range unless
    ``calibration.input_range`` says histogram, the list names tensors made elsewhere (.npy), or
    ``as_tensorrt`` asks for TensorRT's own thresholds (crosscheck)."""
    known = {}
    preprocessed_here = not any(entry.is_tensor for entry in entries)  # .npy tensors come as they are
    if config.spec.calibration.input_range == "preprocessing" and preprocessed_here and not as_tensorrt:
        known[config.image_input.name] = value_range_amax(config.spec.preprocess)
    load_binning_in_background()
    collector = ActivationCollector(
        config.model_path, config.image_input.name, config.calibration_shape, derive=True
    )
    names = collector.measured_names
    histograms = [TrtHistogram() for _ in names]
    pads = [tensor for tensor in collector.derived.values() if tensor.pads is not None]
    added_zeros = dict.fromkeys((tensor.name for tensor in pads), 0)
    source = batch_source(config, entries)
    timings = dict.fromkeys(("decode", "model", "statistics"), 0.0)
    started = time.perf_counter()
    batches = iter(source)
    prefix: CalibrationRun | None = None
    held: list[ImageEntry] = []
    first: set[ImageEntry] = set()
    # Each histogram gets one update per batch, batches in order; within a batch the values are split
    # over threads (the compiled kernel releases the GIL) and the counts added, so the result is the same.
    with ThreadPoolExecutor(max_workers=HISTOGRAM_THREADS, thread_name_prefix="trtq-hist") as pool:
        while True:
            mark = time.perf_counter()
            batch = next(batches, None)
            timings["decode"] += (now := time.perf_counter()) - mark
            if batch is None:
                break
            if source.stats.batches == 1:
                first.update(batch.entries)
            if checkpoint is not None and source.stats.batches > checkpoint:
                held.extend(entry for entry in batch.entries if entry not in first)  # wrap repeats the first
            activations = dict(collector.run(batch.data))
            timings["model"] += (mark := time.perf_counter()) - now
            try:
                update_batch(histograms, names, [activations[name] for name in names], pool, HISTOGRAM_TASKS)
            except NonFiniteError as exc:
                raise TrtqError(
                    f"tensor '{exc.tensor}' has NaN or infinite values (in float32, as TensorRT "
                    f"calibrates) on the batch starting at {batch.entries[0].where}; check preprocess "
                    "(scale, mean, std) against the model"
                ) from None
            for tensor in pads:
                added_zeros[tensor.name] += tensor.added_zeros(activations[tensor.source].shape)
            del activations
            if source.stats.batches == checkpoint:
                prefix = _finished(collector, names, histograms, added_zeros, source.stats, config, known)
            timings["statistics"] += time.perf_counter() - mark
            if on_batch is not None:
                on_batch(batch)
    run = _finished(collector, names, histograms, added_zeros, source.stats, config, known)
    run.seconds = time.perf_counter() - started
    run.timings = timings
    run.prefix, run.held = (prefix, held) if held else (None, [])
    return run


def _finished(
    collector: ActivationCollector,
    names: list[str],
    histograms: list[TrtHistogram],
    added_zeros: dict[str, int],
    stats: BatchStats,
    config: LoadedConfig,
    known: dict[str, np.float32],
) -> CalibrationRun:
    """A run of copies of the histograms as they are now, derived tensors included."""
    measured = dict(zip(names, copy.deepcopy(histograms), strict=True))
    for tensor in collector.derived.values():  # graph order: a source's histogram is there first
        measured[tensor.name] = tensor.histogram(measured[tensor.source], added_zeros.get(tensor.name, 0))
    return CalibrationRun(
        {name: measured[name] for name in collector.tensor_names},
        replace(stats, skipped=list(stats.skipped)),
        config.spec.calibration.percentile,
        known=dict(known),
        in_control_flow=collector.in_control_flow,
        shape_only=collector.shape_only,
    )
