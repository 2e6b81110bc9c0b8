"""Replace several files in one directory as a set: after any interruption, all old or all new.

Every new file is first written to a temporary name and fsynced. A journal (``.NAME.commit``, NAME the
first file of the set) naming each temporary file and its target is then written atomically: that is
the commit point. Before it, an interruption leaves the old set and the temporary files are removed;
after it, the renames are finished, on the spot when Python is interrupted (Ctrl-C) or by the next
``replace_set`` / ``recover_set`` on the same files, or by a reader (``finish_pending``), when the
process was killed. Writers of one set hold an exclusive lock (``.NAME.lock``, removed on release) so
that concurrent runs replace it one after the other instead of mixing their files.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from trtq.errors import TrtqError
from trtq.fileio import atomic_write_text, fsync_dir, hidden_stem, remove_stale_temps, write_temp


def journal_path(first: Path) -> Path:
    return first.with_name(f"{hidden_stem(first)}.commit")


def lock_path(first: Path) -> Path:
    return first.with_name(f"{hidden_stem(first)}.lock")


def replace_set(files: Mapping[Path, bytes]) -> None:
    """Write every file of ``files`` (renamed in the mapping's order) so that they change together."""
    paths = list(files)
    if not paths or len({path.parent for path in paths}) != 1:
        raise ValueError("a file set needs at least one file, all in one directory")
    try:
        paths[0].parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TrtqError(f"{paths[0]}: cannot write ({exc.strerror or exc})") from None
    with _locked(paths[0]):
        _recover(paths)
        _replace(files)


def recover_set(paths: Sequence[Path]) -> None:
    """Finish a committed replacement a killed run left behind; remove stale temporary files."""
    with _locked(paths[0]):
        _recover(paths)


def finish_pending(first: Path) -> None:
    """For readers: complete a committed replacement a killed writer left half-renamed.

    Cheap when nothing is pending (one stat). The journal is the commit point, so finishing its renames
    gives the set the writer committed; without this a reader would see a mixed set.
    """
    journal = journal_path(first)
    if not journal.exists():
        return
    try:
        with _locked(first):
            if journal.exists():
                _finish(journal)
    except (OSError, TrtqError) as exc:
        raise TrtqError(
            f"{first}: an interrupted write of this file set is pending and cannot be finished here ({exc}); "
            "rerun trtq calibrate"
        ) from None


def _replace(files: Mapping[Path, bytes]) -> None:
    paths = list(files)
    journal = journal_path(paths[0])
    temps: list[Path] = []
    try:
        for path, data in files.items():
            temps.append(write_temp(path, data))
        plan = {path.name: tmp.name for path, tmp in zip(paths, temps, strict=True)}
        atomic_write_text(journal, json.dumps(plan) + "\n")
        try:
            _finish(journal)
        except BaseException:
            with contextlib.suppress(Exception):
                _finish(journal)  # committed: an interruption must not leave the set half-renamed
            raise
    finally:
        if not journal.exists():  # not committed (or finished): temporary files are garbage
            for tmp in temps:
                tmp.unlink(missing_ok=True)


def _recover(paths: Sequence[Path]) -> None:
    journal = journal_path(paths[0])
    if journal.exists():
        _finish(journal)
    for path in paths:
        remove_stale_temps(path)


@contextlib.contextmanager
def _locked(first: Path) -> Iterator[None]:
    """Hold the set's exclusive lock. The lock file is removed on release, so a waiter that wakes up
    holding a lock on a removed file retries on the current one (the usual flock-and-unlink protocol)."""
    lock = lock_path(first)
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise TrtqError(f"{lock}: cannot lock the file set ({exc.strerror or exc})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            current = os.stat(lock)
        except FileNotFoundError:
            os.close(fd)
            continue
        except BaseException:
            os.close(fd)
            raise
        if os.path.samestat(os.fstat(fd), current):
            break
        os.close(fd)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)  # while still locked: nobody can hold a lock on the new name yet
        os.close(fd)


def _finish(journal: Path) -> None:
    directory = journal.parent
    try:
        text = journal.read_text(encoding="utf-8")
    except FileNotFoundError:
        return  # finished meanwhile by a writer that does not take the lock (an older trtq)
    try:
        plan = json.loads(text)
        renames = [(directory / str(tmp), directory / str(final)) for final, tmp in plan.items()]
    except (OSError, UnicodeDecodeError, ValueError, AttributeError) as exc:
        raise TrtqError(f"{journal}: unreadable file-set journal ({exc}); delete it and rerun") from None
    for tmp, final in renames:
        with contextlib.suppress(FileNotFoundError):  # renamed already (by the run that was killed)
            os.replace(tmp, final)
    fsync_dir(directory)
    journal.unlink(missing_ok=True)
    fsync_dir(directory)
