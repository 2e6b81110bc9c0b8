"""Replace several files in one directory as a set: after any interruption, all old or all new.

Every new file is first written to a temporary name and fsynced. A journal (``.NAME.commit``, NAME the
first file of the set) naming each temporary file and its target is then written atomically: that is
the commit point. Before it, an interruption leaves the old set and the temporary files are removed;
after it, the renames are finished, on the spot when Python is interrupted (Ctrl-C) or by the next
``replace_set`` / ``recover_set`` on the same files when the process was killed.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from trtq.errors import TrtqError
from trtq.fileio import atomic_write_text, fsync_dir, remove_stale_temps, write_temp


def journal_path(first: Path) -> Path:
    return first.with_name(f".{first.name}.commit")


def replace_set(files: Mapping[Path, bytes]) -> None:
    """Write every file of ``files`` (renamed in the mapping's order) so that they change together."""
    paths = list(files)
    if not paths or len({path.parent for path in paths}) != 1:
        raise ValueError("a file set needs at least one file, all in one directory")
    recover_set(paths)
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


def recover_set(paths: Sequence[Path]) -> None:
    """Finish a committed replacement a killed run left behind; remove stale temporary files."""
    journal = journal_path(paths[0])
    if journal.exists():
        _finish(journal)
    for path in paths:
        remove_stale_temps(path)


def _finish(journal: Path) -> None:
    directory = journal.parent
    try:
        plan = json.loads(journal.read_text(encoding="utf-8"))
        renames = [(directory / str(tmp), directory / str(final)) for final, tmp in plan.items()]
    except (OSError, UnicodeDecodeError, ValueError, AttributeError) as exc:
        raise TrtqError(f"{journal}: unreadable file-set journal ({exc}); delete it and rerun") from None
    for tmp, final in renames:
        with contextlib.suppress(FileNotFoundError):  # renamed already (by the run that was killed)
            os.replace(tmp, final)
    fsync_dir(directory)
    journal.unlink(missing_ok=True)
    fsync_dir(directory)
