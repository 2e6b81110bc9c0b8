"""The calibrator a cache header names for each trtq algorithm, and the algorithm that reproduces a header.

TensorRT discards a cache whose header names another calibrator than the one reading it. percentile
and mse have no TensorRT calibrator: their caches carry EntropyCalibration2, the header of the
calibrator ``trtexec --calib`` uses, and the manifest records the real algorithm.
"""

from __future__ import annotations

from trtq.config.schema import Algorithm

ENTROPY_HEADER = "EntropyCalibration2"
MINMAX_HEADER = "MinMaxCalibration"
_CALIBRATOR_OF: dict[Algorithm, str] = {"entropy": ENTROPY_HEADER, "minmax": MINMAX_HEADER}
"""The algorithms a TensorRT calibrator computes, and the header it writes: the one table trtq's
caches, the calibrators (trtq/trt) and the cross-check read."""


def header_for(algorithm: Algorithm) -> str:
    """The header of the TensorRT calibrator that reads (or, for entropy and minmax, makes) the cache."""
    return _CALIBRATOR_OF.get(algorithm, ENTROPY_HEADER)


def tensorrt_calibrates(algorithm: Algorithm) -> bool:
    """Whether a TensorRT calibrator computes ``algorithm`` (percentile and mse: only trtq, on the CPU)."""
    return algorithm in _CALIBRATOR_OF


def algorithm_for_header(header: str) -> Algorithm | None:
    """The NumPy algorithm that reproduces a header's TensorRT calibrator, if there is one."""
    return next((algorithm for algorithm, named in _CALIBRATOR_OF.items() if named == header), None)
