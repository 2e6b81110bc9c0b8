"""Calibration on any CPU: TensorRT-rule histograms and the entropy, minmax, percentile and mse thresholds.

Public, stable API: ``amax_entropy``, ``amax_minmax``, ``amax_percentile`` and ``amax_mse`` each take
an iterable of NumPy arrays (one per calibration batch, in order) and return a float32 threshold.
"""

from trtq.calib.algorithms import (
    amax_entropy,
    amax_from,
    amax_minmax,
    amax_mse,
    amax_percentile,
    entropy_from,
    minmax_from,
    mse_from,
    percentile_from,
)
from trtq.calib.entropy import EntropyResult, entropy_threshold
from trtq.calib.histogram import NUM_BINS, TrtHistogram
from trtq.numeric import scale_from_amax

__all__ = [
    "NUM_BINS",
    "EntropyResult",
    "TrtHistogram",
    "amax_entropy",
    "amax_from",
    "amax_minmax",
    "amax_mse",
    "amax_percentile",
    "entropy_from",
    "entropy_threshold",
    "minmax_from",
    "mse_from",
    "percentile_from",
    "scale_from_amax",
]
