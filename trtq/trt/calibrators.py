"""TensorRT calibrator classes: thin subclasses of TensorRT's bases around one shared CalibrationFeed.

TensorRT 8-10 only (the base classes are gone in 11). The base ``__init__`` is called explicitly:
TensorRT's trampoline classes crash mysteriously without it. ``get_batch`` returns ``[]`` at the
end of the data (the binding treats ``None`` and an empty list alike, and the stubs allow only a
list). ``read_calibration_cache`` returns ``None`` for "no usable cache": in TensorRT 10's binding
(python/src/infer/pyInt8.cpp, ``readCalibrationCache``) only ``None`` becomes the null pointer that
makes TensorRT calibrate; any buffer, even ``b""``, is handed over as the cache, with its length.
The stubs type the return as ``typing_extensions.Buffer`` without importing it, so mypy reads
it as Any and accepts ``bytes | None``; were the stubs repaired, this override would need a
``type: ignore[override]`` rather than a different return value.
"""

from __future__ import annotations

import tensorrt as trt

from trtq.cache.headers import MINMAX_HEADER, header_for, tensorrt_calibrates
from trtq.errors import TrtqError
from trtq.trt.feed import CalibrationFeed


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

    def read_calibration_cache(self) -> bytes | None:  # None: calibrate
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

    def read_calibration_cache(self) -> bytes | None:  # None: calibrate
        return self.feed.read_cache()

    def write_calibration_cache(self, cache: memoryview) -> None:
        self.feed.write_cache(bytes(cache))


Calibrator = EntropyCalibrator2 | MinMaxCalibrator


def make_calibrator(feed: CalibrationFeed) -> Calibrator:
    """MinMaxCalibrator for minmax; EntropyCalibrator2 for entropy, and as the reader of the CPU-made
    caches of percentile and mse, which must exist and match the config before the build starts."""
    if header_for(feed.algorithm) == MINMAX_HEADER:
        return MinMaxCalibrator(feed)
    if not tensorrt_calibrates(feed.algorithm) and feed.read_cache() is None:
        if feed.errors:  # a cache that could not be read says so, not "missing or stale"
            raise TrtqError(f"{feed.config.cache_path}: {feed.errors[0]}")
        raise TrtqError(
            f"calibration.algorithm '{feed.algorithm}' has no TensorRT calibrator and "
            f"{feed.config.cache_path} is missing or stale: run `trtq calibrate` first, then build"
        )
    return EntropyCalibrator2(feed)
