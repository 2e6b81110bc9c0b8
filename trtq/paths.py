"""Checked before any work: no output of a command is one of its inputs, and every output can be
written as a regular file (never over a directory, FIFO, socket or device such as /dev/null).

Paths are compared after resolving ``..`` and symlinks, and by inode where both exist (hard links), so
``./sub/../model.onnx`` or a link to the config is caught like the plain name. A mistake costs a
second, not a calibration.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from trtq.cache.manifest import manifest_path, report_path
from trtq.config.loader import LoadedConfig
from trtq.data.image_list import ImageEntry, read_image_list
from trtq.errors import TrtqError
from trtq.fileio import temp_name
from trtq.model.files import external_data_files

Named = tuple[str, Path]
"""(role, path): the role says what the path is to this run, e.g. "--json out.json"."""


def config_inputs(
    config: LoadedConfig, entries: Sequence[ImageEntry] = (), *, with_cache: bool = True
) -> list[Named]:
    """The config, its model and the model's external data, ``entries`` (the images this run reads)
    and, unless ``with_cache`` is off (calibrate, which writes it), the config's cache if it names
    one: with its manifest and report it is a set only calibrate may replace."""
    source = config.source
    inputs: list[Named] = [
        (f"the config {source}", source),
        *model_inputs(f"the model (model.path in {source})", config.model_path),
    ]
    if with_cache and config.spec.calibration.cache is not None:
        inputs.append((f"the cache (calibration.cache in {source})", config.cache_path))
    if entries:
        inputs.append((f"the image list (calibration.images in {source})", config.images_path))
    return inputs + image_inputs(entries)


def model_inputs(role: str, model: Path) -> list[Named]:
    """An ONNX model and the external-data files its weights are in: writing over either breaks it."""
    return [
        (role, model),
        *[(f"external data of the model {model.name}", path) for path in external_data_files(model)],
    ]


def image_inputs(entries: Sequence[ImageEntry]) -> list[Named]:
    return [(f"an image listed at {entry.where}", entry.path) for entry in entries]


def heldout_inputs(images: Path) -> list[Named]:
    """The held-out list given with --images and every image on it."""
    try:
        entries = read_image_list(images)
    except TrtqError as exc:
        raise TrtqError(f"{exc} (--images: the held-out images)") from None
    return [(f"the held-out image list --images {images}", images), *image_inputs(entries)]


def given_inputs(**options: Path | None) -> list[Named]:
    """Files given as options, e.g. ``given_inputs(cache=path)`` -> the role "--cache PATH"."""
    return [(f"--{name} {path}", path) for name, path in options.items() if path is not None]


def check_outputs(outputs: Sequence[Named], inputs: Sequence[Named]) -> None:
    """Refuse an output that is an input (or another output) of the same run, or that cannot be written."""
    seen: dict[object, str] = {}
    for role, path in [*inputs, *_set_members(inputs)]:
        for key in _identities(path):
            seen.setdefault(key, role)
    for role, path in outputs:
        for key in _identities(path):
            if key in seen:
                raise TrtqError(
                    f"{role} is {seen[key]}: an output may never overwrite a file this run reads or writes; "
                    "choose another path"
                )
        for key in _identities(path):
            seen[key] = f"also {role}"
        _check_writable(role, path)


def _set_members(inputs: Sequence[Named]) -> list[Named]:
    """The manifest and report beside each input: if it is a cache, they belong to it, and
    overwriting one breaks the set a later build or check relies on."""
    members: list[Named] = []
    for role, path in inputs:
        members.append((f"the manifest of {role}", manifest_path(path)))
        members.append((f"the report of {role}", report_path(path)))
    return members


def _identities(path: Path) -> list[object]:
    keys: list[object] = [str(path.resolve())]
    try:
        info = path.stat()
    except OSError:
        return keys
    if not path.is_dir():
        keys.append((info.st_dev, info.st_ino))
    return keys


def _check_writable(role: str, path: Path) -> None:
    try:
        _probe_writable(role, path)
    except OSError as exc:  # e.g. a file name longer than the file system allows
        raise TrtqError(f"{role}: cannot be written ({exc.strerror or exc})") from None


_NOT_REGULAR = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


def _probe_writable(role: str, path: Path) -> None:
    if path.is_dir():
        raise TrtqError(f"{role}: is a directory; give a file path")
    try:
        kind = _NOT_REGULAR.get(stat.S_IFMT(path.stat().st_mode))
    except OSError:  # not there yet (or under a file: said below)
        kind = None
    if kind is not None:  # an output is replaced by a new file: /dev/null itself, as root
        raise TrtqError(f"{role}: is {kind}, not a regular file; an output replaces it, so give a file path")
    ancestor = path.resolve().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise TrtqError(f"{role}: {ancestor} is a file, so no directory can be made there")
    name_max = os.pathconf(ancestor, "PC_NAME_MAX")
    if len(os.fsencode(path.name)) > name_max:
        raise TrtqError(f"{role}: the file name is longer than the file system allows ({name_max} bytes)")
    probe = temp_name(ancestor / path.name)
    try:  # try it: os.access says yes to root, and knows nothing of /proc or /sys
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
        os.unlink(probe)
    except OSError as exc:
        raise TrtqError(f"{role}: cannot write in {ancestor} ({exc.strerror or exc})") from None


def calibration_outputs(config: LoadedConfig) -> list[Named]:
    """What ``trtq calibrate`` writes: the cache and, beside it, its manifest and report."""
    cache = config.cache_path
    beside = f"written beside calibration.cache in {config.source}"
    return [
        (f"{config.where(('calibration', 'cache'))}: calibration.cache {cache}", cache),
        (f"the manifest {manifest_path(cache)} {beside}", manifest_path(cache)),
        (f"the report {report_path(cache)} {beside}", report_path(cache)),
    ]
