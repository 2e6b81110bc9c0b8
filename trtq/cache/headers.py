"""The calibrator a cache header names for each trtq algorithm, and the algorithm that reproduces a header.

TensorRT discards a cache whose header names another calibrator than the one reading it. percentile
and mse have no TensorRT calibrator: their caches carry EntropyCalibration2, the header of the
calibrator ``trtexec --calib`` uses, and the manifest records the real algorithm.
"""

from __future__ import annotations

from trtq.config.schema import Algorithm

ENTROPY_HEADER = "EntropyCalibration2"
MINMAX_HEADER = "MinMaxCalibration"
_ALGORITHM_OF_HEADER: dict[str, Algorithm] = {ENTROPY_HEADER: "entropy", MINMAX_HEADER: "minmax"}


def header_for(algorithm: Algorithm) -> str:
    """The header of the TensorRT calibrator that reads (or, for entropy and minmax, makes) the cache."""
    return MINMAX_HEADER if algorithm == "minmax" else ENTROPY_HEADER


def algorithm_for_header(header: str) -> Algorithm | None:
    """The NumPy algorithm that reproduces a header's TensorRT calibrator, if there is one."""
    return _ALGORITHM_OF_HEADER.get(header)
