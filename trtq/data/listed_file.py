"""Open a file named in an image list only when it is a regular file.

A FIFO opened for reading blocks until some process writes to it, and a device such as /dev/zero
never ends; both can be named in a list by mistake. Opening without blocking and checking the open
descriptor (not the path) refuses them before any read, with no window between the check and the read.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import BinaryIO

from trtq.data.image_list import ImageEntry
from trtq.errors import TrtqError

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class BadImageError(TrtqError):
    """An image that is missing, unreadable or unusable; carries the entry for skip accounting."""

    def __init__(self, entry: ImageEntry, reason: str) -> None:
        super().__init__(f"{entry.where}: {reason}")
        self.entry = entry
        self.reason = reason


class NotRegularFileError(OSError):
    """The path names something other than a regular file; ``kind`` says what ("a FIFO (named pipe)")."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


def open_regular(path: os.PathLike[str] | str) -> BinaryIO:
    """``path`` opened for binary reading; NotRegularFileError (an OSError) for anything else."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        descriptor = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # sockets (and devices with no driver) cannot be opened at all
            raise NotRegularFileError(_kind(os.stat(path).st_mode)) from None
        raise
    try:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(_kind(mode))
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def _kind(mode: int) -> str:
    return next((kind for test, kind in _KINDS if test(mode)), "a special file")


def read_listed_file(entry: ImageEntry, what: str) -> bytes:
    """The bytes of a listed file (``what``: "image" or "tensor", for the messages); every failure a
    BadImageError naming the list file and line."""
    try:
        with open_regular(entry.path) as handle:
            return handle.read()
    except FileNotFoundError:
        raise BadImageError(entry, f"{what} file not found") from None
    except NotRegularFileError as exc:
        article = "an" if what[0] in "aeiou" else "a"
        raise BadImageError(entry, f"is {exc.kind}, not {article} {what}") from None
    except OSError as exc:
        raise BadImageError(entry, f"cannot read {what}: {exc.strerror or exc}") from None
