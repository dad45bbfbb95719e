"""A local write-ahead journal for the prediction log: a prediction is on disk before it is answered.

Each process appends to its own segment file (JSON lines) and holds an exclusive ``flock`` on it while it
lives. :meth:`Journal.append` hands rows to one writer thread, which writes everything waiting in one
``write`` and one ``fdatasync`` (group commit) and only then completes the callers' futures: under load
many requests share one sync. Every row carries an ``entry`` key (segment name and sequence number), so
shipping it to the database twice stores it once.

A segment whose lock can be taken belongs to a process that has died (``kill -9``, OOM, power loss): a
starting process adopts it, reads its rows back (a torn last line, written but never synced and so never
acknowledged, is dropped with a warning) and ships them before its own. A segment is deleted once every
row in it is in the database (:meth:`Journal.shipped`).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from leadscore.core.exceptions import StoreError
from leadscore.core.files import fsync_dir

log = logging.getLogger(__name__)

SEGMENT_GLOB = "segment-*.jsonl"
SEGMENT_BYTES = 64 * 1024 * 1024  # a new segment after this many bytes, so shipped ones can be deleted
ENTRY = "entry"
_TIME_FIELDS = ("scored_at",)

Rows = list[dict[str, Any]]


class JournalClosed(StoreError):
    """The journal is closed (the process is shutting down): the caller must not acknowledge."""


@dataclass
class _Segment:
    path: Path
    fd: int
    rows: int = 0
    shipped: int = 0
    closed: bool = False


def _encode(row: dict[str, Any]) -> bytes:
    out = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}
    return (json.dumps(out, separators=(",", ":"), allow_nan=False) + "\n").encode()


def _decode(line: bytes) -> dict[str, Any]:
    row: dict[str, Any] = json.loads(line)
    if not isinstance(row, dict) or ENTRY not in row:
        raise ValueError("not a journal row")
    for name in _TIME_FIELDS:
        if isinstance(row.get(name), str):
            row[name] = datetime.fromisoformat(row[name])
    return row


def _try_lock(path: Path) -> int | None:
    """An open descriptor holding ``path``'s exclusive lock, or None if a live process holds it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    if not path.exists():  # adopted and deleted by another process between listing and locking
        os.close(fd)
        return None
    return fd


class Journal:
    """Durable, group-committed appends to this process's segment in ``folder``.

    Parameters
    ----------
    folder : where segments live (created 0700); one folder per destination database and table.
    on_durable : called by the writer thread with each batch of rows once they are synced, in order.
    segment_bytes : start a new segment after this many bytes.
    """

    def __init__(self, folder: Path, on_durable: Callable[[Rows], None], *,
                 segment_bytes: int = SEGMENT_BYTES) -> None:
        self.folder = Path(folder)
        self._on_durable = on_durable
        self.segment_bytes = segment_bytes
        self._segments: dict[str, _Segment] = {}
        self._current: _Segment | None = None
        self._pending: list[tuple[Rows, Future[None]]] = []
        self._cond = threading.Condition()
        self._lock = threading.Lock()  # segments table (writer thread vs shipper thread)
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="prediction-journal", daemon=True)
        self.syncs = 0

    # --- start: adopt what dead processes left ------------------------------------------------------

    def open(self) -> Rows:
        """Create the folder and this process's segment, start the writer; the rows of adopted segments.

        Raises
        ------
        StoreError
            If the folder or a segment cannot be created or read.
        """
        try:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            recovered = self._adopt()
            self._current = self._new_segment()
        except OSError as exc:
            raise StoreError(f"prediction journal {self.folder}: {exc.strerror or exc}") from exc
        self._thread.start()
        return recovered

    def _adopt(self) -> Rows:
        recovered: Rows = []
        for path in sorted(self.folder.glob(SEGMENT_GLOB)):
            fd = _try_lock(path)
            if fd is None:
                continue
            rows, torn, damaged = self._read(fd)
            if torn:
                log.warning("prediction journal %s: dropped a torn line at its end (written, never "
                            "synced, so never acknowledged)", path.name)
            if damaged:
                keep = path.with_suffix(".damaged")
                shutil.copyfile(path, keep)
                log.error("prediction journal %s: %d damaged line(s) cannot be read; the segment is kept "
                          "as %s", path.name, damaged, keep.name)
            segment = _Segment(path, fd, rows=len(rows), closed=True)
            with self._lock:
                self._segments[path.stem] = segment
            recovered.extend(rows)
            if rows:
                log.warning("prediction journal: adopted %s from a process that stopped without shipping "
                            "it: %d row(s) to replay", path.name, len(rows))
            else:
                self._retire(segment)
        return recovered

    @staticmethod
    def _read(fd: int) -> tuple[Rows, int, int]:
        """The rows of a segment, the number of torn lines at its end and of damaged lines before it."""
        size = os.fstat(fd).st_size
        data = os.pread(fd, size, 0) if size else b""
        lines = data.split(b"\n")
        torn = 1 if lines.pop() else 0  # text after the last newline: a write cut short
        rows: Rows = []
        damaged = 0
        for line in lines:
            try:
                rows.append(_decode(line))
            except (ValueError, TypeError):
                damaged += 1
        return rows, torn, damaged

    def _new_segment(self) -> _Segment:
        name = f"segment-{uuid.uuid4().hex}"
        temp = self.folder / f".{name}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)  # locked before it has a name another process would look at
        path = self.folder / f"{name}.jsonl"
        os.rename(temp, path)
        fsync_dir(self.folder)
        segment = _Segment(path, fd)
        with self._lock:
            self._segments[name] = segment
        return segment

    # --- appends --------------------------------------------------------------------------------------

    def append(self, rows: Rows) -> Future[None]:
        """Give each row an ``entry`` key and queue it; the future completes once the rows are synced.

        Raises
        ------
        JournalClosed
            If the journal is closing.
        """
        future: Future[None] = Future()
        with self._cond:
            if self._stopping:
                raise JournalClosed("prediction log is shutting down")
            self._pending.append((rows, future))
            self._cond.notify()
        return future

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if not self._pending:
                    return
                work, self._pending = self._pending, []
            try:
                written = self._commit([rows for rows, _ in work])
            except (OSError, ValueError) as exc:
                error = StoreError(f"prediction journal: cannot write {self.folder}: "
                                   f"{getattr(exc, 'strerror', None) or exc}")
                log.error("%s", error)
                for _, future in work:
                    future.set_exception(error)
                continue
            self._on_durable(written)
            for _, future in work:
                future.set_result(None)

    def _commit(self, batches: list[Rows]) -> Rows:
        segment = self._current
        assert segment is not None
        if segment.rows and os.fstat(segment.fd).st_size >= self.segment_bytes:
            segment = self._rotate(segment)
        written: Rows = []
        chunks: list[bytes] = []
        for rows in batches:
            for row in rows:
                row[ENTRY] = f"{segment.path.stem[8:]}:{segment.rows + len(written)}"
                chunks.append(_encode(row))
                written.append(row)
        data = b"".join(chunks)
        view = memoryview(data)
        while view:
            view = view[os.write(segment.fd, view):]
        os.fdatasync(segment.fd)
        self.syncs += 1
        with self._lock:
            segment.rows += len(written)
        return written

    def _rotate(self, old: _Segment) -> _Segment:
        new = self._new_segment()
        self._current = new
        with self._lock:
            old.closed = True
            done = old.shipped >= old.rows
        if done:
            self._retire(old)
        return new

    # --- shipping -------------------------------------------------------------------------------------

    def shipped(self, rows: Iterable[dict[str, Any]]) -> None:
        """Record rows as stored in the database; delete closed segments that are fully stored."""
        counts: dict[str, int] = {}
        for row in rows:
            key = "segment-" + str(row[ENTRY]).split(":", 1)[0]
            counts[key] = counts.get(key, 0) + 1
        done = []
        with self._lock:
            for key, n in counts.items():
                segment = self._segments.get(key)
                if segment is None:
                    continue
                segment.shipped += n
                if segment.closed and segment.shipped >= segment.rows:
                    done.append(segment)
        for segment in done:
            self._retire(segment)

    def _retire(self, segment: _Segment) -> None:
        with self._lock:  # the writer (rotation) and the shipper may both find a segment done: once only
            if self._segments.pop(segment.path.stem, None) is None:
                return
        try:
            segment.path.unlink(missing_ok=True)
        finally:
            os.close(segment.fd)  # releases the lock

    @property
    def unshipped(self) -> int:
        """Rows synced to the journal but not recorded as stored in the database."""
        with self._lock:
            return sum(s.rows - s.shipped for s in self._segments.values())

    # --- stop -----------------------------------------------------------------------------------------

    def stop_appends(self, timeout: float = 30.0) -> None:
        """Refuse new appends and wait until everything queued is synced."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def close(self) -> None:
        """Close every segment: fully shipped ones are deleted, the rest stay for the next start."""
        self.stop_appends()
        with self._lock:
            segments = list(self._segments.values())
        kept = 0
        for segment in segments:
            if segment.shipped >= segment.rows:
                self._retire(segment)
            else:
                kept += segment.rows - segment.shipped
                with self._lock:
                    self._segments.pop(segment.path.stem, None)
                os.close(segment.fd)
        if kept:
            log.error("prediction log: %d row(s) are not in the database yet; they stay in %s and are "
                      "written at the next start", kept, self.folder)
