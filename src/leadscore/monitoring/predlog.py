"""The prediction log and the store's tables: every scored lead (and, in :mod:`.outcomes`, what became
of it).

A prediction is durable before it is answered: :meth:`PredictionLog.submit` appends the rows to this
process's local journal (:mod:`leadscore.monitoring.journal`, group-committed with ``fdatasync``) and the
returned future completes once they are on disk. A background thread then ships them to the database in
batches (one transaction each, retried with backoff). Each row carries a unique ``entry`` key and
inserts skip keys already stored, so a journal replayed after a crash (``kill -9``, OOM, power loss) adds
exactly the rows the database lacks.

SQLite connections use WAL mode and a busy timeout, so several worker processes can append to one file.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from leadscore.core.database import UtcDateTime, make_engine
from leadscore.core.exceptions import DataValidationError, StoreError
from leadscore.core.files import private_file
from leadscore.monitoring.journal import ENTRY, Journal, JournalClosed, Rows

log = logging.getLogger(__name__)

SQLITE_BUSY_MS = 30_000
CLOSE_ATTEMPTS = 3
MAX_BACKOFF = 5.0


class PredictionLogFull(StoreError):
    """The prediction-log backlog is full (the database is down or too slow) or the log is closing:
    refuse the request instead of dropping its predictions."""


_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _split(table: str) -> tuple[str | None, str]:
    schema, _, name = table.rpartition(".")
    return schema or None, name


def _entry_index(table_name: str) -> str:
    return f"ux_{table_name}_{ENTRY}"


def _time_index(table_name: str) -> str:
    return f"ix_{table_name}_scored_at"


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
        sa.Column(ENTRY, sa.Text),
        sa.Index(_entry_index(name), ENTRY, unique=True),
        sa.Index(_time_index(name), "scored_at"),  # every read of recent scores: newest first, since a time
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
    _add_entry_column(engine, predictions, where)
    _add_time_index(engine, predictions)
    return engine, predictions, outcomes


def _add_time_index(engine: sa.Engine, table: sa.Table) -> None:
    """Give a prediction log made by an earlier release its index on ``scored_at`` (a one-time build;
    a log that cannot take it is still read, only slower)."""
    index = next(i for i in table.indexes if i.name == _time_index(table.name))
    try:
        index.create(engine, checkfirst=True)
    except sa.exc.SQLAlchemyError as exc:  # another worker built it meanwhile, or no right to: reads work
        indexes = {i["name"] for i in sa.inspect(engine).get_indexes(table.name, schema=table.schema)}
        if index.name not in indexes:
            log.warning("prediction log: no index on scored_at (%s)",
                        str(getattr(exc, "orig", exc)).strip().splitlines()[0])


def _add_entry_column(engine: sa.Engine, table: sa.Table, where: str) -> None:
    """Give a prediction log made by an earlier release its ``entry`` column and unique index."""
    columns = {c["name"] for c in sa.inspect(engine).get_columns(table.name, schema=table.schema)}
    if ENTRY in columns:
        return
    preparer = engine.dialect.identifier_preparer
    name = preparer.format_table(table)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"ALTER TABLE {name} ADD COLUMN {ENTRY} TEXT"))
            index = preparer.quote(_entry_index(table.name))
            conn.execute(sa.text(f"CREATE UNIQUE INDEX IF NOT EXISTS {index} ON {name} ({ENTRY})"))
    except sa.exc.SQLAlchemyError as exc:
        columns = {c["name"] for c in sa.inspect(engine).get_columns(table.name, schema=table.schema)}
        if ENTRY not in columns:  # not just another worker adding it first
            engine.dispose()
            raise StoreError(f"prediction log: cannot add the {ENTRY} column to {table.name} in {where}: "
                             f"{str(getattr(exc, 'orig', exc)).strip().splitlines()[0]}") from exc


class PredictionLog:
    """Journals scored leads before they are answered and ships them to a table in the background.

    Parameters
    ----------
    engine, table : where rows go (:func:`open_database`).
    journal_dir : the local journal folder for this database and table (one per destination).
    batch_size : most rows per insert.
    flush_interval : seconds a row may wait for more rows before a smaller batch is written.
    max_queue : most rows waiting for the database; :meth:`submit` raises :class:`PredictionLogFull`
        beyond it (they are safe in the journal, but memory is bounded).
    on_depth, on_written, on_failure : callbacks for metrics (rows waiting / rows written / failures).
    """

    def __init__(self, engine: sa.Engine, table: sa.Table, journal_dir: Path, *, batch_size: int = 500,
                 flush_interval: float = 0.2, max_queue: int = 200_000,
                 on_depth: Callable[[int], None] | None = None,
                 on_written: Callable[[int], None] | None = None,
                 on_failure: Callable[[], None] | None = None) -> None:
        self.engine, self.table = engine, table
        self.batch_size, self.flush_interval, self.max_queue = batch_size, flush_interval, max_queue
        self.journal = Journal(journal_dir, self._durable)
        self._on_depth = on_depth or (lambda n: None)
        self._on_written = on_written or (lambda n: None)
        self._on_failure = on_failure or (lambda: None)
        self._buffer: deque[dict[str, Any]] = deque()
        self._inflight = 0
        self._reserved = 0  # submitted, not yet synced to the journal
        self._cond = threading.Condition()
        self._closing = False   # refuse new rows
        self._stopping = False  # the journal is synced: the shipper may stop once its buffer is empty
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        self._insert = insert(table).on_conflict_do_nothing(index_elements=[ENTRY])
        self.written = 0
        self.replayed = 0

    def start(self) -> None:
        """Open the journal (adopting what crashed processes left, queued first) and start shipping.

        Raises
        ------
        StoreError
            If the journal folder cannot be created or read.
        """
        recovered = self.journal.open()
        self.replayed = len(recovered)
        if recovered:
            self._durable(recovered)
        self._thread.start()

    @property
    def depth(self) -> int:
        """Rows accepted but not in the database yet."""
        return len(self._buffer) + self._inflight + self._reserved

    def submit(self, rows: Rows) -> Future[None]:
        """Journal rows; the future completes once they are on disk (then they are acknowledged).

        Raises
        ------
        PredictionLogFull
            If the backlog is full or the log is closed: the caller must not acknowledge the request.
        """
        with self._cond:
            if self._closing:
                raise PredictionLogFull("prediction log is shutting down")
            if self.depth + len(rows) > self.max_queue:
                raise PredictionLogFull(f"prediction log backlog is full ({self.depth} rows waiting)")
            self._reserved += len(rows)
        try:
            future = self.journal.append(rows)
        except JournalClosed as exc:
            self._release(len(rows))
            raise PredictionLogFull(str(exc)) from exc
        n = len(rows)

        def release_if_failed(done: Future[None]) -> None:
            if done.exception() is not None:
                self._release(n)

        future.add_done_callback(release_if_failed)
        return future

    def _release(self, n: int) -> None:
        with self._cond:
            self._reserved = max(0, self._reserved - n)

    def _durable(self, rows: Rows) -> None:
        """Rows are on disk (journal thread, or recovered at start): queue them for the database."""
        with self._cond:
            self._buffer.extend(rows)
            self._reserved = max(0, self._reserved - len(rows))
            depth = self.depth
            if len(self._buffer) >= self.batch_size:
                self._cond.notify()
        self._on_depth(depth)

    def _take(self) -> Rows:
        with self._cond:
            if not self._stopping and len(self._buffer) < self.batch_size:
                self._cond.wait(self.flush_interval)
            batch = [self._buffer.popleft() for _ in range(min(self.batch_size, len(self._buffer)))]
            self._inflight = len(batch)
            return batch

    def _write(self, batch: Rows) -> None:
        with self.engine.begin() as conn:
            conn.execute(self._insert, batch)

    def _run(self) -> None:
        failures = 0
        batch: Rows = []
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
                        self._inflight = 0
                        return  # the rows stay in the journal and are shipped at the next start
                    self._cond.wait(min(MAX_BACKOFF, 0.1 * 2 ** failures))
                continue
            failures = 0
            self.written += len(batch)
            self.journal.shipped(batch)
            with self._cond:
                self._inflight = 0
                depth = self.depth
            self._on_written(len(batch))
            self._on_depth(depth)
            batch = []

    def close(self, timeout: float = 60.0) -> None:
        """Refuse new rows, sync what is queued, ship everything to the database, close the journal.

        Rows the database does not take within ``timeout`` seconds (or after a few attempts) stay in the
        journal and are shipped by the next process that starts on it.
        """
        with self._cond:
            self._closing = True
        self.journal.stop_appends(timeout)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("prediction log: %d row(s) still unwritten after %.0f s", self.depth, timeout)
        else:
            self.journal.close()
        self._on_depth(self.depth)


def _read_scores(engine: sa.Engine, table: sa.Table, columns: list[Any], version: str | None,
                 since: datetime | None) -> pd.DataFrame:
    """``columns`` of ``table``, oldest first, of one model version and since a time when given."""
    query = sa.select(*columns).order_by(table.c.scored_at)
    if version is not None:
        query = query.where(table.c.model_version == version)
    if since is not None:
        query = query.where(table.c.scored_at >= since)
    with engine.connect() as conn:
        frame = pd.read_sql(query, conn)
    frame["scored_at"] = pd.to_datetime(frame["scored_at"], utc=True)
    return frame


def read_log(engine: sa.Engine, table: sa.Table, *, version: str | None = None,
             since: datetime | None = None, inputs: bool = False) -> pd.DataFrame:
    """The logged scores (lead_id, model_version, probability, score, tier, scored_at), oldest first;
    with ``inputs``, the scored leads' input fields as further columns."""
    columns = [table.c.lead_id, table.c.model_version, table.c.probability, table.c.score, table.c.tier,
               table.c.scored_at, *([table.c.inputs] if inputs else [])]
    frame = _read_scores(engine, table, columns, version, since)
    return _with_inputs(frame) if inputs else frame


def read_scores_table(engine: sa.Engine, name: str, *, version: str | None = None,
                      since: datetime | None = None) -> pd.DataFrame:
    """A batch scores table (what ``leadscore score`` writes to a database) in the log's shape.

    Raises
    ------
    DataValidationError
        If the table does not exist or lacks the score columns.
    """
    schema, table_name = _split(name)
    try:
        table = sa.Table(table_name, sa.MetaData(schema=schema), autoload_with=engine)
    except sa.exc.NoSuchTableError:
        raise DataValidationError(f"no table {name!r} in {engine.url.render_as_string(hide_password=True)}") \
            from None
    needed = ("lead_id", "model_version", "probability", "scored_at")
    missing = [c for c in needed if c not in table.c]
    if missing:
        raise DataValidationError(f"table {name!r} is not a scores table: missing {', '.join(missing)}")
    columns = [table.c[c] for c in (*needed, "score", "tier") if c in table.c]
    return _read_scores(engine, table, columns, version, since)


def count_logged(engine: sa.Engine, table: sa.Table, *, since: datetime | None = None) -> int:
    """How many scores the log holds (scored at or after ``since``)."""
    query = sa.select(sa.func.count()).select_from(table)
    if since is not None:
        query = query.where(table.c.scored_at >= since)
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def _not_shadow(table: sa.Table) -> sa.ColumnElement[bool]:
    """Rows scored by the served model (a challenger's shadow rows carry ``outputs.shadow`` true)."""
    return sa.func.coalesce(table.c.outputs["shadow"].as_boolean(), sa.false()).is_(sa.false())


def read_recent(engine: sa.Engine, table: sa.Table, *, since: datetime, limit: int) -> pd.DataFrame:
    """Score and tier of at most ``limit`` served (not shadow) scores at or after ``since``, newest first."""
    query = (sa.select(table.c.score, table.c.tier).where(table.c.scored_at >= since, _not_shadow(table))
             .order_by(table.c.scored_at.desc()).limit(limit))
    with engine.connect() as conn:
        return pd.read_sql(query, conn)


def read_lead_scores(engine: sa.Engine, table: sa.Table, lead_id: str, *, limit: int) -> list[dict[str, Any]]:
    """One lead's served (not shadow) scores, newest first: model_version, probability, score, tier,
    outputs (the answer, with reasons) and scored_at."""
    query = (sa.select(table.c.model_version, table.c.probability, table.c.score, table.c.tier,
                       table.c.outputs, table.c.scored_at)
             .where(table.c.lead_id == lead_id, _not_shadow(table))
             .order_by(table.c.scored_at.desc(), table.c.id.desc()).limit(limit))
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]


def _with_inputs(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its ``inputs`` column (the scored leads' fields) spread into columns of their own;
    a field named like one of the log's columns is left out."""
    fields = pd.DataFrame(list(frame.pop("inputs")), index=frame.index)
    return frame.join(fields[[c for c in fields.columns if c not in frame.columns]])


def read_served(engine: sa.Engine, table: sa.Table, *, since: datetime, version: str | None,
                limit: int, inputs: bool = False) -> pd.DataFrame:
    """lead_id, model_version, probability and scored_at of at most ``limit`` served (not shadow) scores
    at or after ``since`` (of one version when given), newest first; with ``inputs``, the scored leads'
    input fields as further columns."""
    query = (sa.select(table.c.lead_id, table.c.model_version, table.c.probability, table.c.scored_at,
                       *([table.c.inputs] if inputs else []))
             .where(table.c.scored_at >= since, _not_shadow(table))
             .order_by(table.c.scored_at.desc()).limit(limit))
    if version is not None:
        query = query.where(table.c.model_version == version)
    with engine.connect() as conn:
        frame = pd.read_sql(query, conn)
    frame["scored_at"] = pd.to_datetime(frame["scored_at"], utc=True)
    return _with_inputs(frame) if inputs else frame
