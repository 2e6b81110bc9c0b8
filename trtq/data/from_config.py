"""A config's calibration image list, and batches of any image list as the config's input takes them."""

from __future__ import annotations

from trtq.config.loader import LoadedConfig
from trtq.data.batches import BatchSource
from trtq.data.image_list import ImageEntry, read_image_list
from trtq.data.preprocess import Preprocessor
from trtq.errors import TrtqError


def calibration_entries(config: LoadedConfig) -> list[ImageEntry]:
    """The config's image list, with the config key named when the list itself is at fault."""
    path = config.images_path  # a missing calibration.images names itself
    try:
        return read_image_list(path, config.spec.calibration.max_images)
    except TrtqError as exc:
        raise TrtqError(f"{exc} (calibration.images in {config.source})") from None


def batch_source(config: LoadedConfig, entries: list[ImageEntry]) -> BatchSource:
    height, width = config.image_size
    calibration = config.spec.calibration
    return BatchSource(
        entries=entries,
        preprocessor=Preprocessor(config.spec.preprocess, height, width),
        batch_size=config.batch_size,
        last_batch=calibration.last_batch,
        on_bad_image=calibration.on_bad_image,
        workers=calibration.workers,
    )


def calibration_entries_if_listed(config: LoadedConfig) -> list[ImageEntry]:
    """The calibration images, or none when the list cannot be read (a command that only reads a
    cache does not need it): for checks such as "held-out images are not calibration images"."""
    try:
        return calibration_entries(config)
    except TrtqError:
        return []


def eval_entries(config: LoadedConfig) -> list[ImageEntry] | None:
    """The config's separate scoring list, if it names one."""
    listed = config.spec.calibration.eval_images
    if listed is None:
        return None
    try:
        return read_image_list(config.resolve(listed))
    except TrtqError as exc:
        raise TrtqError(f"{exc} (calibration.eval_images in {config.source})") from None
