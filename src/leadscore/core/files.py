"""Atomic, durable file writes: a crash leaves the old file or the new one, never half of one."""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from leadscore.core.exceptions import ConfigError


def fsync_dir(folder: Path) -> None:
    """Sync a folder's entries (a file created or renamed in it survives a power loss)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[Path], object], *, suffix: str = "") -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it over ``path``.

    The file and its folder are fsynced, so the new content survives a power loss once this returns.
    The temporary file is removed when ``write`` fails. ``suffix`` ends the temporary name, for writers
    that infer the format from it (``.csv.gz``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{suffix}")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; see :func:`atomic_write`."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def private_file(path: str | Path) -> Path:
    """``path``, created empty if absent, readable and writable by its owner only (0600).

    An existing file of ours that others could read is narrowed to 0600; its content is kept.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    if path.stat().st_mode & 0o077 and path.stat().st_uid == os.getuid():
        path.chmod(0o600)
    return path


class FileLock:
    """An exclusive, non-blocking lock on ``path`` (created, and removed on release), for one writer.

    ``acquire`` raises :class:`~leadscore.core.exceptions.ConfigError` with ``busy_message`` when another
    process holds it. The lock is an ``flock`` on the file, so it disappears with a crashed holder; after
    locking, the file is checked to still be the one at ``path`` (a holder removes it on release).
    """

    def __init__(self, path: str | Path, busy_message: str) -> None:
        self.path = Path(path)
        self.busy_message = busy_message
        self._fd: int | None = None

    def acquire(self) -> FileLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(fd).st_ino != os.stat(self.path).st_ino:
                raise BlockingIOError  # released and removed by its holder while we waited
        except (BlockingIOError, FileNotFoundError):
            os.close(fd)
            raise ConfigError(self.busy_message) from None
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)  # closing drops the flock
            self._fd = None
