"""Cache, report and manifest are replaced as a set: every interruption leaves all old or all new files."""

from __future__ import annotations

import multiprocessing
import os
import stat
import time
from collections.abc import Callable
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from tests.conftest import WriteConfig
from trtq import fileio, fileset
from trtq.cache.manifest import read_manifest, report_path
from trtq.cache.trt_format import format_cache, make_cache, read_cache
from trtq.calibrate.pipeline import calibrate
from trtq.config import load_config
from trtq.data.from_config import calibration_entries
from trtq.errors import TrtqError
from trtq.fileio import hidden_stem
from trtq.fileset import journal_path, recover_set, replace_set
from trtq.fingerprint import fingerprint_config


def _set(tmp_path: Path) -> list[Path]:
    return [tmp_path / "m.cache", tmp_path / "m.cache.report.json", tmp_path / "m.cache.manifest.json"]


def _write_old(paths: list[Path]) -> dict[Path, bytes]:
    old = {path: f"old {path.name}\n".encode() for path in paths}
    for path, data in old.items():
        path.write_bytes(data)
    return old


def _new(paths: list[Path]) -> dict[Path, bytes]:
    return {path: f"new {path.name}\n".encode() for path in paths}


def _contents(paths: list[Path]) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in paths}


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def _old_file(path: Path, text: str) -> None:
    """A file last written longer ago than a temporary file can live (fileio.STALE_AFTER_S)."""
    path.write_text(text)
    past = time.time() - 2 * fileio.STALE_AFTER_S
    os.utime(path, (past, past))


def _failing_replace(fail_on: int, times: int) -> Callable[[Path, Path], None]:
    # os.replace call 1 commits the journal; 2, 3, ... rename the files of the set.
    """os.replace that raises KeyboardInterrupt on call number ``fail_on`` (and the next ``times - 1``)."""
    real = os.replace
    calls = {"n": 0}

    def replace(src: Path, dst: Path) -> None:
        calls["n"] += 1
        if fail_on <= calls["n"] < fail_on + times:
            raise KeyboardInterrupt
        real(src, dst)

    return replace


def test_interrupted_before_the_commit_keeps_the_old_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _set(tmp_path)
    old = _write_old(paths)

    def interrupted(path: Path, text: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(fileset, "atomic_write_text", interrupted)  # the journal is never written
    with pytest.raises(KeyboardInterrupt):
        replace_set(_new(paths))
    assert _contents(paths) == old
    assert _leftovers(tmp_path) == []


def test_interrupted_between_renames_finishes_the_new_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _set(tmp_path)
    _write_old(paths)
    new = _new(paths)
    monkeypatch.setattr(fileset.os, "replace", _failing_replace(fail_on=3, times=1))
    with pytest.raises(KeyboardInterrupt):
        replace_set(new)
    assert _contents(paths) == new
    assert _leftovers(tmp_path) == []


def test_killed_between_renames_is_finished_by_the_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _set(tmp_path)
    old = _write_old(paths)
    new = _new(paths)
    # A kill: the renames stop after the first one and nothing in the process runs afterwards.
    monkeypatch.setattr(fileset.os, "replace", _failing_replace(fail_on=3, times=100))
    with pytest.raises(KeyboardInterrupt):
        replace_set(new)
    monkeypatch.undo()
    assert _contents(paths) == {paths[0]: new[paths[0]], paths[1]: old[paths[1]], paths[2]: old[paths[2]]}
    assert journal_path(paths[0]).exists()
    recover_set(paths)
    assert _contents(paths) == new
    assert _leftovers(tmp_path) == []


def test_stale_temporary_files_of_a_killed_run_are_removed(tmp_path: Path) -> None:
    paths = _set(tmp_path)
    stale = [tmp_path / ".m.cache.0123456789ab.tmp", tmp_path / ".m.cache.manifest.json.ba9876543210.tmp"]
    for path in stale:
        _old_file(path, "half")
    unrelated = tmp_path / ".other.cache.0123456789ab.tmp"
    _old_file(unrelated, "someone else's")
    live = tmp_path / ".m.cache.report.json.00000000cafe.tmp"
    live.write_text("being written by another trtq right now")
    replace_set(_new(paths))
    assert _leftovers(tmp_path) == sorted([unrelated.name, live.name])


def test_new_files_get_the_umask_mode_without_changing_the_umask(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    previous = os.umask(0o027)
    try:

        def no_umask(mask: int) -> int:
            raise AssertionError("os.umask changes the mask of every thread in the process")

        monkeypatch.setattr(fileio.os, "umask", no_umask)
        fresh = tmp_path / "fresh.txt"
        fileio.atomic_write_text(fresh, "x")
        kept = tmp_path / "kept.txt"
        kept.write_text("y")
        kept.chmod(0o600)
        fileio.atomic_write_text(kept, "z")
    finally:
        monkeypatch.undo()
        os.umask(previous)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o640
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600


def test_a_reader_completes_a_set_a_killed_writer_left_half_renamed(
    write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    calibrate(load_config(write_config(n_images=2)))
    newer = load_config(write_config(n_images=4))
    cache = newer.cache_path
    monkeypatch.setattr(fileset.os, "replace", _failing_replace(fail_on=3, times=100))
    with pytest.raises(KeyboardInterrupt):
        calibrate(newer)  # killed after the cache's rename: new cache beside the old report and manifest
    monkeypatch.undo()
    assert journal_path(cache).exists()
    entries = calibration_entries(newer)
    current = fingerprint_config(newer, entries)
    # The journal is the commit point: the reader finishes the renames and sees the whole new set.
    assert read_manifest(cache).mismatches(cache, current, entries) == []
    assert report_path(cache).read_bytes() != b""
    assert _leftovers(cache.parent) == []


def test_reading_the_cache_completes_a_pending_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = _set(tmp_path)
    _write_old(paths)
    cache = format_cache(make_cache({"input": 0.5})).encode()
    new = {**_new(paths), paths[0]: cache}
    monkeypatch.setattr(fileset.os, "replace", _failing_replace(fail_on=2, times=100))  # no rename done
    with pytest.raises(KeyboardInterrupt):
        replace_set(new)
    monkeypatch.undo()
    assert read_cache(paths[0]).scales == {"input": 0.5}
    assert _contents(paths) == new
    assert _leftovers(tmp_path) == []


def _write_set_repeatedly(directory: str, writer: int, start: Barrier, errors: Queue[str]) -> None:
    paths = _set(Path(directory))
    start.wait()  # all writers begin together so that their replacements overlap
    try:
        for round_ in range(40):
            replace_set({path: f"{writer} {round_} {path.name}\n".encode() for path in paths})
    except Exception as exc:  # reported, not raised: the parent shows every writer's failure
        errors.put(f"writer {writer}: {exc}")


def test_concurrent_writers_leave_one_writers_whole_set(tmp_path: Path) -> None:
    paths = _set(tmp_path)
    _write_old(paths)
    context = multiprocessing.get_context("spawn")
    start, errors = context.Barrier(4), context.Queue()
    writers = [
        context.Process(target=_write_set_repeatedly, args=(str(tmp_path), writer, start, errors))
        for writer in range(4)
    ]
    for process in writers:
        process.start()
    for process in writers:
        process.join()
    assert [process.exitcode for process in writers] == [0] * 4
    assert errors.empty()
    stamps = {path.read_text().rsplit(" ", 1)[0] for path in paths}  # "WRITER ROUND" of each file
    assert len(stamps) == 1, stamps
    assert _leftovers(tmp_path) == []


def test_a_single_write_also_removes_its_stale_temporary_files(tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    _old_file(tmp_path / ".report.html.0123456789ab.tmp", "half of a killed run's report")
    _old_file(tmp_path / ".report.htmlx.0123456789ab.tmp", "another file's")
    fileio.atomic_write_text(report, "<html></html>")
    assert report.read_text() == "<html></html>"
    assert _leftovers(tmp_path) == [".report.htmlx.0123456789ab.tmp"]


def test_names_that_are_not_utf8_get_their_hidden_files(tmp_path: Path) -> None:
    # Linux names are bytes; Python carries the ones that are not UTF-8 as surrogate escapes.
    short = tmp_path / os.fsdecode(b"out\xff.json")
    long = tmp_path / os.fsdecode(b"\xff" * 240)
    replace_set({short: b"a"})
    assert short.read_bytes() == b"a"
    stem = hidden_stem(long)
    assert len(os.fsencode(stem)) <= 200 and stem == hidden_stem(long)  # shortened, and the same every run
    replace_set({long: b"b"})
    assert long.read_bytes() == b"b" and sorted(os.listdir(tmp_path)) == sorted([short.name, long.name])


def test_a_full_disk_is_a_clear_error_and_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    def full(_fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    target = tmp_path / "model.cache"
    monkeypatch.setattr(fileio.os, "fsync", full)
    with pytest.raises(TrtqError, match=f"{target}: cannot write \\(No space left on device\\)"):
        replace_set({target: b"TRT-101601-EntropyCalibration2\n"})
    assert list(tmp_path.iterdir()) == []  # no temporary file, no lock
