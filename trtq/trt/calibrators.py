"""TensorRT calibrator classes: thin subclasses of TensorRT's bases around one shared CalibrationFeed.

TensorRT 8-10 only (the base classes are gone in 11). The base ``__init__`` is called explicitly:
TensorRT's trampoline classes crash mysteriously without it. Where the tensorrt-stubs are stricter
than the runtime, the stubs are followed: ``get_batch`` returns ``[]`` at the end of the data and
``read_calibration_cache`` returns ``b""`` for "no usable cache" (both end up as TensorRT's "none").
"""

from __future__ import annotations

import tensorrt as trt

from trtq.errors import TrtqError
from trtq.trt.feed import CPU_ONLY, CalibrationFeed


# The two classes repeat four one-line methods on purpose: each overrides its TensorRT base directly,
# the plain form TensorRT's pybind11 trampolines are documented with, and mypy checks every
# override against the stubs. A shared mixin or a class factory would hide that from both.
class EntropyCalibrator2(trt.IInt8EntropyCalibrator2):
    def __init__(self, feed: CalibrationFeed) -> None:
        trt.IInt8EntropyCalibrator2.__init__(self)
        self.feed = feed

    def get_batch_size(self) -> int:
        return self.feed.batch_size

    def get_batch(self, names: list[str]) -> list[int]:
        return self.feed.next_batch(names)

    def read_calibration_cache(self) -> bytes:
        return self.feed.read_cache()

    def write_calibration_cache(self, cache: memoryview) -> None:
        self.feed.write_cache(bytes(cache))


class MinMaxCalibrator(trt.IInt8MinMaxCalibrator):
    def __init__(self, feed: CalibrationFeed) -> None:
        trt.IInt8MinMaxCalibrator.__init__(self)
        self.feed = feed

    def get_batch_size(self) -> int:
        return self.feed.batch_size

    def get_batch(self, names: list[str]) -> list[int]:
        return self.feed.next_batch(names)

    def read_calibration_cache(self) -> bytes:
        return self.feed.read_cache()

    def write_calibration_cache(self, cache: memoryview) -> None:
        self.feed.write_cache(bytes(cache))


Calibrator = EntropyCalibrator2 | MinMaxCalibrator


def make_calibrator(feed: CalibrationFeed) -> Calibrator:
    """MinMaxCalibrator for minmax; EntropyCalibrator2 for entropy, and as the reader of the CPU-made
    caches of percentile and mse, which must exist and match the config before the build starts."""
    if feed.algorithm == "minmax":
        return MinMaxCalibrator(feed)
    if feed.algorithm in CPU_ONLY and not feed.read_cache():
        raise TrtqError(
            f"calibration.algorithm '{feed.algorithm}' has no TensorRT calibrator and "
            f"{feed.config.cache_path} is missing or stale: run `trtq calibrate` first, then build"
        )
    return EntropyCalibrator2(feed)
