"""What every trtq calibrator does, whatever TensorRT base class it wears.

Batches come from the config's image list through the same pipeline ``trtq calibrate`` uses, are
copied through one page-locked host buffer into one device allocation made at start-up, and the
device address is handed to TensorRT once per requested input name. TensorRT swallows exceptions
raised inside its calibrator callbacks and silently ends calibration, so every failure here is
logged loudly and counted, and ``check`` turns a bad calibration into an error after the build.
"""

from __future__ import annotations

import hashlib
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from math import prod
from typing import Any

import numpy as np

from trtq.cache.headers import header_for, tensorrt_calibrates
from trtq.cache.manifest import Manifest, manifest_path, manifest_text, read_manifest
from trtq.cache.retarget import retarget_bytes
from trtq.cache.trt_format import parse_cache
from trtq.config.loader import LoadedConfig
from trtq.config.schema import Algorithm
from trtq.data.batches import Batch
from trtq.data.from_config import batch_source, calibration_entries
from trtq.errors import TrtqError
from trtq.fileset import replace_set
from trtq.fingerprint import fingerprint_config
from trtq.trt.device import DeviceMemory
from trtq.trt_versions import encode_version

Log = Callable[[str], None]

# percentile and mse have no TensorRT calibrator: their scales come from `trtq calibrate` and
# TensorRT only reads them (trtq/cache/headers.py).


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class CalibrationFeed:
    config: LoadedConfig
    memory: DeviceMemory
    algorithm: Algorithm
    trt_version: str
    log: Log = _stderr
    batches_served: int = 0
    errors: list[str] = field(default_factory=list)
    cache_reused: bool = False

    def __post_init__(self) -> None:
        self.entries = calibration_entries(self.config)
        self.shape = self.config.calibration_shape
        self.input_name = self.config.image_input.name
        self.device_address = self.memory.allocate(prod(self.shape) * np.dtype(np.float32).itemsize)
        self.host = self.memory.pinned_empty(self.shape)
        self._batches: Iterator[Batch] | None = None
        self._accepted_cache: bytes | None = None

    @property
    def batch_size(self) -> int:
        return self.shape[0]

    def next_batch(self, names: list[str]) -> list[int]:
        """Device addresses for ``names`` (in their order), or ``[]`` at the end of the data."""
        if self.errors:  # an earlier callback failed: the build fails anyway, end calibration now
            return []
        try:
            if not tensorrt_calibrates(self.algorithm):
                raise TrtqError(
                    f"TensorRT cannot calibrate with '{self.algorithm}'; "
                    "run `trtq calibrate` to make the cache"
                )
            unknown = [name for name in names if name != self.input_name]
            if unknown:
                raise TrtqError(
                    f"TensorRT asked for inputs {unknown}; the config feeds only '{self.input_name}'"
                )
            if self.cache_reused:
                # TensorRT asks for batches only when it did not use the cache it was handed.
                self.log("trtq: TensorRT discarded the cache (header or version not accepted): calibrating")
                self.cache_reused = False
            if self._batches is None:
                self._batches = iter(batch_source(self.config, self.entries))
            batch = next(self._batches, None)
            if batch is None:
                self.log(f"trtq: calibration data exhausted after {self.batches_served} batches")
                return []
            if batch.data.shape != self.shape:
                raise TrtqError(
                    f"batch shape {list(batch.data.shape)} differs from calibration shape {list(self.shape)}"
                )
            np.copyto(self.host, batch.data)
            self.memory.copy_to_device(self.device_address, self.host)
            self.batches_served += 1
            return [self.device_address for _ in names]
        except Exception as exc:  # TensorRT would swallow it and end calibration silently
            self.errors.append(f"{type(exc).__name__}: {exc}")
            self.log(f"trtq: ERROR in get_batch (calibration ends here): {exc}\n{traceback.format_exc()}")
            return []

    def read_cache(self) -> bytes | None:
        """``_read_cache``, with any unexpected error counted like get_batch's: the binding would
        swallow it and calibrate, silently replacing a cache that could not even be read."""
        try:
            return self._read_cache()
        except Exception as exc:
            self.errors.append(f"read_calibration_cache: {type(exc).__name__}: {exc}")
            self.log(f"trtq: ERROR reading the calibration cache: {exc}\n{traceback.format_exc()}")
            return None

    def _read_cache(self) -> bytes | None:
        """The cache if its manifest matches this config, else None (TensorRT calibrates).

        A cache made for another TensorRT version is handed over with its header rewritten for
        the running one (in memory; the file and its manifest stay as they are): the version
        changes the header TensorRT checks, never the scales (docs/design.md).
        """
        if self._accepted_cache is not None:  # checked once (make_calibrator, then TensorRT) is enough
            return self._accepted_cache
        path = self.config.cache_path
        if not path.is_file():
            self.log(f"trtq: no calibration cache at {path}: calibrating")
            return None
        try:
            manifest = read_manifest(path)
            current = fingerprint_config(self.config, self.entries)
            reasons = manifest.mismatches(path, current, self.entries)
            data = path.read_bytes()
            header = parse_cache(data, str(path))
        except (TrtqError, UnicodeDecodeError) as exc:
            self.log(f"trtq: not reusing {path}: {exc}; recalibrating")
            return None
        expected = header_for(self.algorithm)
        if header.algorithm != expected:
            reasons.append(
                f"cache header says {header.algorithm}, this calibrator is {expected} "
                "(TensorRT would discard it)"
            )
        if reasons:
            self.log(f"trtq: not reusing {path}; recalibrating because:\n  - " + "\n  - ".join(reasons))
            return None
        note = ""
        if header.version != encode_version(self.trt_version):
            data = retarget_bytes(data, self.trt_version, str(path))
            note = (
                f"; its header targets TensorRT {header.trt_version}, so it is fed to the running "
                f"TensorRT {self.trt_version} with the header rewritten for it (scales unchanged)"
            )
        self.cache_reused = True
        self._accepted_cache = data
        self.log(
            f"trtq: reusing calibration cache {path} (manifest matches; scales by {manifest.scales_by}){note}"
        )
        return data

    def write_cache(self, cache: bytes) -> None:
        """Validate TensorRT's cache, write it atomically, then a fresh manifest for it.

        A cache TensorRT only read back (no batch was asked for) is not written over: the file keeps
        its own header and the manifest keeps who made the scales. A cache TensorRT discarded and
        recalibrated is replaced like any other new cache."""
        path = self.config.cache_path
        if self.errors:
            self.log(f"trtq: a calibration callback failed; {path} is kept as it was")
            return
        if self.cache_reused:  # next_batch clears it: TensorRT asks for batches only to recalibrate
            self.log(f"trtq: TensorRT handed back the cache it read; {path} is kept as it was")
            return
        try:
            parse_cache(cache, "TensorRT's calibration cache")
            manifest = Manifest(
                fingerprint=fingerprint_config(self.config, self.entries),
                cache_sha256=hashlib.sha256(cache).hexdigest(),
                algorithm=self.algorithm,
                batch_size=self.batch_size,
                trt_version=self.trt_version,
                scales_by=f"TensorRT {self.trt_version} ({header_for(self.algorithm)})",
            )
            # One set: an interruption leaves the old cache and manifest or the new ones, never a mix.
            replace_set({path: cache, manifest_path(path): manifest_text(manifest).encode("utf-8")})
            self.log(f"trtq: wrote calibration cache {path} and its manifest")
        except Exception as exc:
            self.errors.append(f"write_calibration_cache: {type(exc).__name__}: {exc}")
            self.log(f"trtq: ERROR writing the calibration cache: {exc}\n{traceback.format_exc()}")

    def summary(self) -> dict[str, Any]:
        """For the build report: batches served, whether a cache was reused, and which."""
        return {
            "batches": self.batches_served,
            "cache_reused": self.cache_reused,
            "cache": str(self.config.cache_path),
        }

    def check(self) -> None:
        """After the build: an error if a callback failed or calibration consumed no batch."""
        if self.errors:
            raise TrtqError(
                f"calibration failed inside TensorRT's callbacks ({len(self.errors)} error(s)); "
                f"first: {self.errors[0]}"
            )
        if not self.cache_reused and self.batches_served == 0:
            raise TrtqError(f"calibration consumed no batch from {self.config.images_path}")
