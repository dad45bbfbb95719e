"""The prediction log and the outcomes table: every scored lead, and what became of it.

:class:`PredictionLog` takes rows from request handlers into an in-memory buffer and a background thread
inserts them in batches (one transaction each), so a request never waits for the database. A failed
insert is retried with backoff and its rows stay buffered. :meth:`PredictionLog.close` (the app's
shutdown) writes everything still buffered; rows that still cannot be written after a few attempts go
to a JSON-lines spill file rather than being lost silently.

SQLite connections use WAL mode and a busy timeout, so several worker processes can append to one file.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from leadscore.core.database import UtcDateTime, make_engine
from leadscore.core.exceptions import StoreError
from leadscore.core.files import private_file

log = logging.getLogger(__name__)

SQLITE_BUSY_MS = 30_000
CLOSE_ATTEMPTS = 3
MAX_BACKOFF = 5.0


class PredictionLogFull(StoreError):
    """The prediction-log buffer is full (the database is down or too slow): refuse instead of dropping."""


_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _split(table: str) -> tuple[str | None, str]:
    schema, _, name = table.rpartition(".")
    return schema or None, name


def build_tables(metadata: sa.MetaData, log_table: str, outcomes_table: str) -> tuple[sa.Table, sa.Table]:
    """The prediction-log and outcomes tables in ``metadata``."""
    schema, name = _split(log_table)
    predictions = sa.Table(
        name, metadata,
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.Text, nullable=False, index=True),
        sa.Column("lead_id", sa.Text, index=True),
        sa.Column("model_version", sa.Text, nullable=False),
        sa.Column("probability", sa.Float, nullable=False),
        sa.Column("score", sa.Integer, nullable=False),
        sa.Column("tier", sa.Text),
        sa.Column("inputs", _JSON, nullable=False),
        sa.Column("outputs", _JSON, nullable=False),
        sa.Column("scored_at", UtcDateTime, nullable=False),
        schema=schema,
    )
    schema, name = _split(outcomes_table)
    outcomes = sa.Table(
        name, metadata,
        sa.Column("lead_id", sa.Text, primary_key=True),
        sa.Column("converted", sa.Boolean, nullable=False),
        sa.Column("converted_at", UtcDateTime),
        sa.Column("recorded_at", UtcDateTime, nullable=False),
        schema=schema,
    )
    return predictions, outcomes


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def open_database(url: str, log_table: str, outcomes_table: str) -> tuple[sa.Engine, sa.Table, sa.Table]:
    """An engine for ``url`` with both tables created if absent (safe when workers race to create them).

    Raises
    ------
    StoreError
        If the URL is invalid or the database cannot be reached or written.
    """
    engine = make_engine(url)
    if engine.dialect.name not in ("sqlite", "postgresql"):
        engine.dispose()
        raise StoreError(f"prediction log: expected a SQLite or PostgreSQL URL, got {engine.dialect.name}")
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        if engine.url.database not in (None, "", ":memory:"):
            # every scored lead's inputs: owner only (SQLite gives -wal and -shm the same mode)
            private_file(engine.url.database)
    metadata = sa.MetaData()
    predictions, outcomes = build_tables(metadata, log_table, outcomes_table)
    where = engine.url.render_as_string(hide_password=True)
    for attempt in range(3):
        try:
            metadata.create_all(engine, checkfirst=True)
            break
        except (sa.exc.IntegrityError, sa.exc.ProgrammingError, sa.exc.OperationalError) as exc:
            if attempt == 2 or "exist" not in str(exc).lower():  # another worker created it meanwhile
                engine.dispose()
                raise StoreError(f"prediction log: cannot create tables in {where}: "
                                 f"{str(getattr(exc, 'orig', exc)).strip().splitlines()[0]}") from exc
    return engine, predictions, outcomes


class PredictionLog:
    """Appends scored leads to a table from a background thread, in batches.

    Parameters
    ----------
    engine, table : where rows go (:func:`open_database`).
    batch_size : most rows per insert.
    flush_interval : seconds a row may wait for more rows before a smaller batch is written.
    max_queue : most rows buffered; :meth:`submit` raises :class:`PredictionLogFull` beyond it.
    spill_path : JSON-lines file for rows that cannot be written at shutdown.
    on_depth, on_written, on_failure : callbacks for metrics (rows buffered / rows written / failures).
    """

    def __init__(self, engine: sa.Engine, table: sa.Table, *, batch_size: int = 500,
                 flush_interval: float = 0.2, max_queue: int = 200_000, spill_path: Path | None = None,
                 on_depth: Callable[[int], None] | None = None,
                 on_written: Callable[[int], None] | None = None,
                 on_failure: Callable[[], None] | None = None) -> None:
        self.engine, self.table = engine, table
        self.batch_size, self.flush_interval, self.max_queue = batch_size, flush_interval, max_queue
        self.spill_path = spill_path
        self._on_depth = on_depth or (lambda n: None)
        self._on_written = on_written or (lambda n: None)
        self._on_failure = on_failure or (lambda: None)
        self._buffer: deque[dict[str, Any]] = deque()
        self._inflight = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self.written = 0

    def start(self) -> None:
        self._thread.start()

    @property
    def depth(self) -> int:
        """Rows accepted but not written yet."""
        return len(self._buffer) + self._inflight

    def submit(self, rows: list[dict[str, Any]]) -> None:
        """Buffer rows for writing; returns at once.

        Raises
        ------
        PredictionLogFull
            If the buffer is full or the log is closed: the caller must not acknowledge the request.
        """
        with self._cond:
            if self._stopping:
                raise PredictionLogFull("prediction log is shutting down")
            if self.depth + len(rows) > self.max_queue:
                raise PredictionLogFull(f"prediction log backlog is full ({self.depth} rows waiting)")
            self._buffer.extend(rows)
            depth = self.depth
            if len(self._buffer) >= self.batch_size:
                self._cond.notify()
        self._on_depth(depth)

    def _take(self) -> list[dict[str, Any]]:
        with self._cond:
            if not self._stopping and len(self._buffer) < self.batch_size:
                self._cond.wait(self.flush_interval)
            batch = [self._buffer.popleft() for _ in range(min(self.batch_size, len(self._buffer)))]
            self._inflight = len(batch)
            return batch

    def _write(self, batch: list[dict[str, Any]]) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.insert(self.table), batch)

    def _run(self) -> None:
        failures = 0
        batch: list[dict[str, Any]] = []
        while True:
            if not batch:
                batch = self._take()
                if not batch:
                    with self._cond:
                        if self._stopping and not self._buffer:
                            return
                    continue
            try:
                self._write(batch)
            except sa.exc.SQLAlchemyError as exc:
                failures += 1
                self._on_failure()
                log.warning("prediction log: writing %d row(s) failed (attempt %d): %s", len(batch), failures,
                            str(getattr(exc, "orig", exc)).strip().splitlines()[0])
                with self._cond:
                    if self._stopping and failures >= CLOSE_ATTEMPTS:
                        self._spill(batch + list(self._buffer))
                        self._buffer.clear()
                        self._inflight = 0
                        return
                    self._cond.wait(min(MAX_BACKOFF, 0.1 * 2 ** failures))
                continue
            failures = 0
            self.written += len(batch)
            with self._cond:
                self._inflight = 0
                depth = self.depth
            self._on_written(len(batch))
            self._on_depth(depth)
            batch = []

    def _spill(self, rows: list[dict[str, Any]]) -> None:
        if self.spill_path is None:
            log.error("prediction log: %d row(s) could not be written and are lost", len(rows))
            return
        with self.spill_path.open("a", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, default=str) + "\n")
        log.error("prediction log: %d row(s) could not be written; appended them to %s", len(rows),
                  self.spill_path)

    def close(self, timeout: float = 60.0) -> None:
        """Write everything buffered, then stop the thread (waits up to ``timeout`` seconds)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("prediction log: %d row(s) still unwritten after %.0f s", self.depth, timeout)
        self._on_depth(self.depth)


class OutcomeStore:
    """Actual outcomes per lead, one row each: recording a lead again replaces its row (upsert)."""

    def __init__(self, engine: sa.Engine, table: sa.Table) -> None:
        self.engine, self.table = engine, table

    def record(self, lead_id: str, converted: bool, converted_at: datetime | None) -> dict[str, Any]:
        """Insert or replace the outcome of ``lead_id``; returns the stored row.

        Raises
        ------
        StoreError
            If the database cannot be written.
        """
        when = None if converted_at is None else converted_at.astimezone(UTC)
        row: dict[str, Any] = {"lead_id": lead_id, "converted": converted, "converted_at": when,
                               "recorded_at": datetime.now(UTC)}
        insert = postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert
        statement = insert(self.table).values(**row)
        statement = statement.on_conflict_do_update(
            index_elements=["lead_id"],
            set_={k: statement.excluded[k] for k in ("converted", "converted_at", "recorded_at")})
        try:
            with self.engine.begin() as conn:
                conn.execute(statement)
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"cannot record the outcome of lead {lead_id!r}: "
                             f"{str(getattr(exc, 'orig', exc)).strip().splitlines()[0]}") from exc
        return row

    def get(self, lead_id: str) -> Mapping[str, Any] | None:
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(self.table).where(self.table.c.lead_id == lead_id)).first()
        return None if found is None else dict(found._mapping)
