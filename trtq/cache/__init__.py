"""Calibration caches in TensorRT's own format, and the manifests that record their provenance."""

from trtq.cache.manifest import Manifest, manifest_path, read_manifest, write_manifest
from trtq.cache.trt_format import CalibrationCache, format_cache, parse_cache, read_cache, write_cache
from trtq.trt_versions import decode_version, encode_version

__all__ = [
    "CalibrationCache",
    "Manifest",
    "decode_version",
    "encode_version",
    "format_cache",
    "manifest_path",
    "parse_cache",
    "read_cache",
    "read_manifest",
    "write_cache",
    "write_manifest",
]
