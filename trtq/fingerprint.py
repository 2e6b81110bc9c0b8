"""What a calibration result was made from, hashed part by part so a mismatch can say which part changed."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from trtq.config.loader import LoadedConfig
from trtq.config.schema import PreprocessSection
from trtq.data.from_config import eval_entries
from trtq.data.image_list import ImageEntry
from trtq.data.listed_file import open_regular
from trtq.errors import TrtqError
from trtq.fileio import sha256_file
from trtq.model.files import external_data_files

SHORT = 16


@dataclass(frozen=True)
class Fingerprint:
    model_sha256: str
    inputs: dict[str, list[int]]
    preprocess: dict[str, Any]
    image_hashes: list[str]
    """Short SHA-256 of each image's bytes, in list order (order changes TensorRT's histograms)."""
    calibration: dict[str, Any]
    external_data: dict[str, str] = field(default_factory=dict)
    """SHA-256 of each external-data file of the model, by path relative to the model."""

    @property
    def images_sha256(self) -> str:
        return _sha256_json(self.image_hashes)

    @property
    def digest(self) -> str:
        return _sha256_json(asdict(self))

    def to_json(self) -> dict[str, Any]:
        return {"digest": self.digest, "images_sha256": self.images_sha256, **asdict(self)}

    @classmethod
    def from_json(cls, data: Any) -> Fingerprint:
        """From a manifest; ValueError names the first field that is missing or of the wrong type."""
        try:
            fields = _FingerprintJson.model_validate(data)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in ("fingerprint", *error["loc"]))
            raise ValueError(f"{where}: {error['msg']}") from None
        return cls(**fields.model_dump())

    def differences(self, current: Fingerprint, image_entries: Sequence[ImageEntry] = ()) -> list[str]:
        """Human-readable reasons why ``current`` (the config now) differs from this (the cache's)."""
        reasons = []
        if self.model_sha256 != current.model_sha256:
            reasons.append(
                f"model bytes changed (sha256 {self.model_sha256[:SHORT]} -> {current.model_sha256[:SHORT]})"
            )
        for name in sorted(set(self.external_data) | set(current.external_data)):
            if self.external_data.get(name) != current.external_data.get(name):
                reasons.append(f"model external data '{name}' changed")
        if self.inputs != current.inputs:
            reasons.append(f"calibration input shape changed ({self.inputs} -> {current.inputs})")
        for key in sorted(set(self.preprocess) | set(current.preprocess)):
            before, after = self.preprocess.get(key), current.preprocess.get(key)
            if before != after:
                reasons.append(f"preprocess.{key} changed ({before!r} -> {after!r})")
        for key in sorted(set(self.calibration) | set(current.calibration)):
            before, after = self.calibration.get(key), current.calibration.get(key)
            if before != after:
                reasons.append(f"calibration.{key} changed ({before!r} -> {after!r})")
        reasons.extend(_image_differences(self.image_hashes, current.image_hashes, image_entries))
        return reasons


class _FingerprintJson(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    model_sha256: str
    inputs: dict[str, list[int]]
    preprocess: dict[str, Any]
    image_hashes: list[str]
    calibration: dict[str, Any]
    external_data: dict[str, str] = {}


def fingerprint_config(config: LoadedConfig, entries: Sequence[ImageEntry]) -> Fingerprint:
    """Hash everything that changes calibration results. Reads the model and every listed image."""
    spec = config.spec
    if not config.model_path.is_file():
        raise TrtqError(f"{config.model_path}: ONNX model not found (model.path in {config.source})")
    calibration: dict[str, Any] = {
        "algorithm": spec.calibration.algorithm,
        "batch_size": config.batch_size,
        "last_batch": spec.calibration.last_batch,
        "on_bad_image": spec.calibration.on_bad_image,
        # written into the cache's header line, so it changes the cache's bytes (the TensorRT version
        # does too, but never the scales: docs/design.md, cache version policy)
        "cache_header": spec.calibration.cache_header,
        "input_range": spec.calibration.input_range,
    }
    if spec.calibration.algorithm in ("percentile", "auto"):  # auto may choose percentile
        calibration["percentile"] = spec.calibration.percentile
    if spec.calibration.algorithm == "auto":  # what auto's choice was scored on
        calibration.update(_scored_on(config))
    return Fingerprint(
        model_sha256=sha256_file(config.model_path),
        inputs={config.image_input.name: list(config.calibration_shape)},
        preprocess=_preprocess(spec.preprocess),
        image_hashes=[_image_hash(entry) for entry in entries],
        calibration=calibration,
        external_data={
            os.path.relpath(path, config.model_path.parent): _file_hash(path, config)
            for path in external_data_files(config.model_path)
        },
    )


def _scored_on(config: LoadedConfig) -> dict[str, Any]:
    """The images ``algorithm: auto`` scores on: a separate list's hashes, else the held-out share."""
    listed = eval_entries(config)
    if listed is None:
        return {"holdout": config.spec.calibration.holdout}
    return {"eval_images_sha256": _sha256_json([_image_hash(entry) for entry in listed])}


def _preprocess(section: PreprocessSection) -> dict[str, Any]:
    """The preprocessing as it acts: mean [0.5] is mean [0.5, 0.5, 0.5] on three channels (std alike),
    no pad_value is the default grey. A config without pad_normalized hashes as before it existed."""
    values = section.model_dump(mode="json")
    values["pad_value"] = section.pixel_pad
    if section.pad_normalized is None:
        del values["pad_normalized"]
    for key in ("mean", "std"):
        if len(values[key]) == 1:
            values[key] = values[key] * section.channels
    return values


def _file_hash(path: Path, config: LoadedConfig) -> str:
    try:
        return sha256_file(path)
    except OSError as exc:
        raise TrtqError(
            f"{path}: cannot read the model's external data ({exc.strerror or exc}); "
            f"model.path in {config.source}"
        ) from None


def _image_hash(entry: ImageEntry) -> str:
    """Of the file's bytes, image or .npy tensor alike; only a regular file is read (a FIFO would block)."""
    digest = hashlib.sha256()
    try:
        with open_regular(entry.path) as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    except OSError:
        return "unreadable"  # the batch pipeline reports (or skips) it with its line number
    return digest.hexdigest()[:SHORT]


def _image_differences(before: list[str], after: list[str], entries: Sequence[ImageEntry]) -> list[str]:
    if before == after:
        return []
    if sorted(before) == sorted(after):
        return [
            "calibration images are the same but in a different order (TensorRT's histograms depend on it)"
        ]
    old, new = set(before), set(after)
    added = [i for i, h in enumerate(after) if h not in old]
    removed = sum(1 for h in before if h not in new)
    detail = f"calibration images changed: {len(before)} -> {len(after)} images, {len(added)} new or modified"
    detail += f", {removed} gone"
    if added and entries:
        detail += f" (first new: {entries[added[0]].where})"
    return [detail]


def _sha256_json(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
