"""Atomic file writes, strict JSON text and streamed hashing: an interrupted run never leaves a
half-written file."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import secrets
import time
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, TypeAdapter, ValidationError

from trtq.errors import TrtqError

_CHUNK = 1 << 20
TMP_SUFFIX = ".tmp"
STALE_AFTER_S = 60.0


_LONG_NAME_BYTES = 200
"""Names longer than this are shortened in their hidden siblings, which add up to 20 bytes: a name
near the file system's 255-byte limit must still get a temporary file, journal and lock."""


def hidden_stem(path: Path) -> str:
    """``.NAME``, or for a long NAME ``.`` + its first bytes + a hash of all of it (same every run)."""
    encoded = os.fsencode(path.name)  # the bytes on disk, also for names that are not UTF-8
    if len(encoded) <= _LONG_NAME_BYTES:
        return f".{path.name}"
    return f".{os.fsdecode(encoded[: _LONG_NAME_BYTES - 20])}~{hashlib.sha256(encoded).hexdigest()[:16]}"


def temp_name(path: Path) -> Path:
    """A fresh hidden name beside ``path``: ``.NAME.<random>.tmp`` (stale ones match ``.NAME.*.tmp``)."""
    return path.with_name(f"{hidden_stem(path)}.{secrets.token_hex(6)}{TMP_SUFFIX}")


def remove_stale_temps(path: Path) -> None:
    """Temporary files of ``path`` that a killed run left behind (``.NAME.<random>.tmp``).

    Only files untouched for STALE_AFTER_S: a temporary file lives for the moment between its
    write and its rename, so a younger one may belong to another trtq writing the same output."""
    escaped = "".join(f"[{c}]" if c in "*?[" else c for c in hidden_stem(path))
    now = time.time()
    for stale in path.parent.glob(f"{escaped}.*{TMP_SUFFIX}"):
        with contextlib.suppress(FileNotFoundError):
            if now - stale.stat().st_mtime > STALE_AFTER_S:
                stale.unlink()


def write_temp(path: Path, data: bytes) -> Path:
    """Write ``data`` to a new temporary file beside ``path`` and fsync it; returns the temporary name.

    The file is created with mode 0666 and the kernel applies the umask, as a plain open() would (no
    process-wide umask change); an existing ``path`` keeps its mode.
    """
    tmp = temp_name(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise TrtqError(f"{path}: cannot write ({exc.strerror or exc})") from None
    try:
        with contextlib.suppress(FileNotFoundError):
            os.fchmod(fd, path.stat().st_mode & 0o7777)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:  # a full disk or quota, an I/O error
        tmp.unlink(missing_ok=True)
        raise TrtqError(f"{path}: cannot write ({exc.strerror or exc})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def fsync_dir(directory: Path) -> None:
    """Make renames in ``directory`` durable (a crash after the rename cannot bring back the old name)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it over ``path``."""
    remove_stale_temps(path)
    tmp = write_temp(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def strict_json(value: Any) -> str:
    """JSON text with infinite and NaN floats written as null, trtq's one convention for them: JSON
    has no Infinity, and a reader that follows the standard rejects a file that has one."""
    return json.dumps(_without_non_finite(value), indent=1, allow_nan=False) + "\n"


def write_json(path: Path, value: Any) -> None:
    """trtq's one JSON writer: strict JSON (non-finite numbers as null), replaced atomically."""
    atomic_write_text(path, strict_json(value))


class JsonRecord(BaseModel):
    """A JSON file's record as trtq writes it: types checked, extra keys kept (newer writers)."""

    model_config = ConfigDict(extra="allow", strict=True)


def _nan_for_null(value: Any) -> Any:
    return math.nan if value is None else value


Number = Annotated[float, BeforeValidator(_nan_for_null)]
"""A number trtq wrote with write_json: null (non-finite) is read back as nan."""


def read_json(path: Path, adapter: TypeAdapter[Any], expected: str) -> Any:
    """A JSON file another trtq command wrote, as plain Python values; a wrong file is named with
    what was expected in it, instead of failing on a missing key later."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TrtqError(f"{path}: not found (expected {expected})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TrtqError(f"{path}: cannot read JSON ({exc}); expected {expected}") from None
    try:
        return _plain(adapter.validate_python(raw))
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        raise TrtqError(f"{path}: {where}: {error['msg']}; expected {expected}") from None


def _plain(value: Any) -> Any:
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value.model_dump() if isinstance(value, BaseModel) else value


def _without_non_finite(value: Any) -> Any:
    if isinstance(value, float):  # NumPy's float64 too; float32 values are converted by the caller
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _without_non_finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_without_non_finite(item) for item in value]
    return value


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
