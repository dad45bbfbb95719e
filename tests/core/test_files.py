"""Atomic, durable writes, private files and the one-writer lock (core/files.py)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from leadscore.core import files
from leadscore.core.exceptions import ConfigError
from leadscore.core.files import FileLock, atomic_write, atomic_write_text, private_file


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_atomic_write_text_creates_folders_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "metrics.json"
    assert atomic_write_text(target, '{"auc": 0.78}\n') == target
    assert target.read_text(encoding="utf-8") == '{"auc": 0.78}\n'
    assert _leftovers(target.parent) == []


def test_atomic_write_replaces_by_rename_and_syncs_file_and_folder(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "scores.csv"
    target.write_text("old\n")
    old_inode = target.stat().st_ino
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(files.os, "fsync", fsync)
    atomic_write_text(target, "new\n")
    assert target.read_text() == "new\n" and target.stat().st_ino != old_inode  # a new file, renamed
    assert synced == ["file", "dir"]  # the content, then the folder entry that names it


def test_atomic_write_temporary_name_ends_with_the_suffix_beside_the_target(tmp_path: Path) -> None:
    seen: list[Path] = []

    def write(tmp: Path) -> None:
        seen.append(tmp)
        tmp.write_bytes(b"x")

    atomic_write(tmp_path / "leads.csv.gz", write, suffix=".csv.gz")
    assert seen[0].parent == tmp_path and seen[0].name.startswith(".leads.csv.gz.")
    assert seen[0].name.endswith(".tmp.csv.gz") and not seen[0].exists()


def test_failed_write_keeps_the_old_file_and_removes_the_temporary_one(tmp_path: Path) -> None:
    target = tmp_path / "model.json"
    target.write_text("old")

    def half_then_fail(tmp: Path) -> None:
        tmp.write_text("ne")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, half_then_fail)
    assert target.read_text() == "old" and _leftovers(tmp_path) == []


def test_failed_first_write_leaves_nothing(tmp_path: Path) -> None:
    def fail(tmp: Path) -> None:
        raise ValueError("cannot serialise")

    with pytest.raises(ValueError, match="cannot serialise"):
        atomic_write(tmp_path / "new.json", fail)
    assert list(tmp_path.iterdir()) == []


def test_private_file_is_created_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = private_file(tmp_path / "keys" / "signing.key")
    finally:
        os.umask(old)
    assert path.exists() and path.read_bytes() == b""
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_private_file_narrows_an_open_file_and_keeps_its_content(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    path.write_text("kept")
    path.chmod(0o644)
    assert private_file(path) == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_text() == "kept"
    path.chmod(0o400)  # already closed to others: left as it is
    private_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o400


def test_file_lock_admits_one_holder_and_is_released(tmp_path: Path) -> None:
    path = tmp_path / "locks" / "retrain.lock"
    first = FileLock(path, "another retraining is running").acquire()
    assert path.exists()
    with pytest.raises(ConfigError, match="another retraining is running"):
        FileLock(path, "another retraining is running").acquire()
    first.release()
    assert not path.exists()
    first.release()  # releasing twice is harmless
    second = FileLock(path, "busy").acquire()  # free again
    second.release()


def test_file_lock_refuses_a_file_replaced_while_locking(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "job.lock"
    real_flock = files.fcntl.flock

    def flock_then_replaced(fd: int, operation: int) -> None:
        real_flock(fd, operation)
        path.unlink()          # its holder released and removed it meanwhile ...
        path.write_text("")    # ... and someone else created a new one

    monkeypatch.setattr(files.fcntl, "flock", flock_then_replaced)
    with pytest.raises(ConfigError, match="busy"):
        FileLock(path, "busy").acquire()
