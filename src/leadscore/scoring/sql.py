"""Batch scoring against SQL databases: read leads in chunks, upsert scores safely, record each run.

Scores are keyed by ``(lead_id, model_version)`` and written one transaction per chunk, together with a
row in ``<table>_chunks``; a run (``<table>_runs``) that stopped part-way can therefore be resumed, and
rewriting a chunk never duplicates rows. PostgreSQL and SQLite are supported for writing; any
SQLAlchemy database can be read.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
import re
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from leadscore.core import jsonsafe
from leadscore.core.database import UtcDateTime, first_line, is_sql_location, make_engine, safe_url
from leadscore.core.exceptions import ConfigError, StoreError

log = logging.getLogger(__name__)

SCORE_COLUMNS: tuple[str, ...] = ("lead_id", "model_version", "probability", "score", "tier", "action",
                                  "confidence", "reasons", "scored_at", "run_id")
RUN_STATUSES = ("done", "failed")

_QUERY = re.compile(r"^\s*\(*\s*(select|with)\b", re.IGNORECASE)
_T = TypeVar("_T")


def _split_name(table: str) -> tuple[str | None, str]:
    schema, _, name = table.rpartition(".")
    return schema or None, name


def read_sql_chunks(url: str, source: str, *, chunk_size: int,
                    order_by: str | None = None) -> Iterator[pd.DataFrame]:
    """Stream a table or a query as DataFrames of at most ``chunk_size`` rows.

    Parameters
    ----------
    source : a table name (``leads`` or ``schema.leads``) or a query starting with SELECT or WITH.
    order_by : a column to sort by, so that chunks are the same on every run.

    An empty result yields no chunk. Rows come through a server-side cursor where the database has one.

    Raises
    ------
    StoreError
        If a SQLite file does not exist; on iteration, if the database cannot be reached, the table does
        not exist or the query fails.
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ConfigError(f"chunk_size: expected a positive integer, got {chunk_size!r}")
    engine = make_engine(url)
    database = engine.url.database or ""
    if engine.dialect.name == "sqlite" and database not in ("", ":memory:") \
            and not database.startswith("file:") and not Path(database).exists():
        raise StoreError(f"SQLite database not found: {database} (reading must not create an empty one)")
    quote = engine.dialect.identifier_preparer.quote
    order = f" ORDER BY {quote(order_by)}" if order_by else ""
    if _QUERY.match(source):
        query = source.strip().rstrip(";").strip()
        sql = f"SELECT * FROM ({query}) AS leadscore_source{order}" if order else query
        label = f"query {' '.join(query.split())[:80]!r}"
        return _iter_chunks(engine, sa.text(sql), label, chunk_size, table=None)
    schema, name = _split_name(source.strip())
    qualified = ".".join(quote(part) for part in (schema, name) if part)
    return _iter_chunks(engine, sa.text(f"SELECT * FROM {qualified}{order}"), f"table {source.strip()!r}",
                        chunk_size, table=(schema, name))


def content_signature(url: str, source: str, *, key: str | None) -> str:
    """What the rows of ``source`` are now: their count and a sha256 of ``key`` in ``key`` order.

    Batch runs put this in the run key, so a run interrupted and resumed against a source whose rows
    changed (leads added or deleted) starts over instead of skipping the leads that moved between chunks.
    Reads one column; without ``key`` only the row count is compared.
    """
    engine = make_engine(url)
    quote = engine.dialect.identifier_preparer.quote
    engine.dispose()
    column = quote(key) if key else "1"
    if _QUERY.match(source):
        inner = f"SELECT {column} AS k FROM ({source.strip().rstrip(';').strip()}) AS leadscore_inner"
    else:
        schema, name = _split_name(source.strip())
        inner = f"SELECT {column} AS k FROM " + ".".join(quote(p) for p in (schema, name) if p)
    digest, rows = hashlib.sha256(), 0
    for chunk in read_sql_chunks(url, inner, chunk_size=50_000, order_by="k" if key else None):
        rows += len(chunk)
        if key:
            digest.update("\x1f".join(chunk["k"].astype(str)).encode() + b"\x1e")
    return f"rows={rows}" + (f",{key}-sha256={digest.hexdigest()[:24]}" if key else "")


def _check_table(conn: sa.Connection, table: tuple[str | None, str], label: str, where: str) -> None:
    inspector = sa.inspect(conn)
    if not inspector.has_table(table[1], schema=table[0]):
        names = sorted(inspector.get_table_names(schema=table[0]))
        shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "") if names else "none"
        raise StoreError(f"{label} not found in {where} (tables: {shown})")


def _iter_chunks(engine: sa.Engine, statement: sa.TextClause, label: str, chunk_size: int,
                 table: tuple[str | None, str] | None) -> Iterator[pd.DataFrame]:
    where = engine.url.render_as_string(hide_password=True)
    try:
        try:
            conn = engine.connect()
        except sa.exc.DBAPIError as exc:
            raise StoreError(f"cannot connect to {where}: {first_line(exc)}") from exc
        with conn:
            try:
                if table is not None:
                    _check_table(conn, table, label, where)
                streaming = conn.execution_options(stream_results=True, max_row_buffer=chunk_size)
                result = streaming.execute(statement)
                columns = list(result.keys())
                parts = result.partitions(chunk_size)
                rows: Sequence[sa.Row[Any]] | None = next(parts, None)
            except sa.exc.SQLAlchemyError as exc:
                raise StoreError(f"cannot read {label} from {where}: {first_line(exc)}") from exc
            done = 0
            while rows is not None:
                yield pd.DataFrame.from_records([tuple(r) for r in rows], columns=columns, coerce_float=True)
                done += len(rows)
                try:
                    rows = next(parts, None)
                except sa.exc.SQLAlchemyError as exc:
                    raise StoreError(f"reading {label} from {where} failed after {done} rows: "
                                     f"{first_line(exc)}") from exc
    finally:
        engine.dispose()


def _build_tables(metadata: sa.MetaData, table: str) -> tuple[sa.Table, sa.Table, sa.Table]:
    schema, name = _split_name(table)
    scores = sa.Table(
        name, metadata,
        sa.Column("lead_id", sa.Text, nullable=False), sa.Column("model_version", sa.Text, nullable=False),
        sa.Column("probability", sa.Float, nullable=False), sa.Column("score", sa.Integer, nullable=False),
        sa.Column("tier", sa.Text), sa.Column("action", sa.Text), sa.Column("confidence", sa.Float),
        sa.Column("reasons", sa.Text), sa.Column("scored_at", UtcDateTime, nullable=False),
        sa.Column("run_id", sa.Text), sa.PrimaryKeyConstraint("lead_id", "model_version"), schema=schema,
    )
    runs = sa.Table(
        f"{name}_runs", metadata,
        sa.Column("run_id", sa.Text, primary_key=True), sa.Column("run_key", sa.Text, index=True),
        sa.Column("status", sa.Text), sa.Column("model_version", sa.Text), sa.Column("source", sa.Text),
        sa.Column("started_at", UtcDateTime), sa.Column("finished_at", UtcDateTime),
        sa.Column("rows_scored", sa.Integer), sa.Column("seconds", sa.Float),
        sa.Column("info", sa.Text), sa.Column("summary", sa.Text), schema=schema,
    )
    chunks = sa.Table(
        f"{name}_chunks", metadata,
        sa.Column("run_id", sa.Text, primary_key=True),
        sa.Column("chunk_index", sa.Integer, primary_key=True), sa.Column("rows", sa.Integer),
        sa.Column("committed_at", UtcDateTime), schema=schema,
    )
    return scores, runs, chunks


def _json_text(value: Any) -> str:
    return jsonsafe.dumps(value)


def _is_missing(value: Any) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and value != value)


def _texts(series: pd.Series) -> list[str | None]:
    return [None if _is_missing(v) else str(v) for v in series.tolist()]


def _floats(series: pd.Series) -> list[float | None]:
    try:
        values = pd.to_numeric(series).to_numpy(dtype="float64", na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"scores column {series.name!r}: expected numbers, got {first_line(exc)}") from exc
    return [v if math.isfinite(v) else None for v in values.tolist()]


def _ints(series: pd.Series) -> list[int | None]:
    values = _floats(series)
    bad = [v for v in values if v is not None and not v.is_integer()]
    if bad:
        raise StoreError(f"scores column {series.name!r}: expected whole numbers, got {bad[0]!r}")
    return [None if v is None else int(v) for v in values]


def _json_texts(series: pd.Series) -> list[str | None]:
    out: list[str | None] = []
    for v in series.tolist():
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, dict | list | tuple | np.ndarray):
            out.append(_json_text(v))
        else:
            out.append(None if _is_missing(v) else _json_text(v))
    return out


def _timestamps(series: pd.Series) -> list[datetime | None]:
    try:
        stamps = pd.to_datetime(series, utc=True)  # naive values are taken as UTC
    except (TypeError, ValueError) as exc:
        raise StoreError(f"scores column {series.name!r}: expected timestamps, "
                         f"got {first_line(exc)}") from exc
    return [None if v is pd.NaT else v.to_pydatetime(warn=False) for v in stamps.tolist()]


def _score_records(scores: pd.DataFrame, run_id: str) -> list[dict[str, Any]]:
    """Rows as plain Python values (NaN -> None), the last one kept per (lead_id, model_version)."""
    missing = [c for c in SCORE_COLUMNS if c not in scores.columns and c != "run_id"]
    if missing:
        raise StoreError(f"scores: expected columns {', '.join(SCORE_COLUMNS)}; missing {', '.join(missing)}")
    values: dict[str, list[Any]] = {
        "lead_id": _texts(scores["lead_id"]), "model_version": _texts(scores["model_version"]),
        "probability": _floats(scores["probability"]), "score": _ints(scores["score"]),
        "tier": _texts(scores["tier"]), "action": _texts(scores["action"]),
        "confidence": _floats(scores["confidence"]), "reasons": _json_texts(scores["reasons"]),
        "scored_at": _timestamps(scores["scored_at"]),
        "run_id": _texts(scores["run_id"]) if "run_id" in scores.columns else [None] * len(scores),
    }
    values["run_id"] = [v or run_id for v in values["run_id"]]
    rows = zip(*values.values(), strict=True)
    records = {(row[0], row[1]): dict(zip(values, row, strict=True)) for row in rows}
    if len(records) < len(scores):
        log.warning("scores: %d duplicate (lead_id, model_version) rows; the last of each is kept",
                    len(scores) - len(records))
    return list(records.values())


def _is_transient(exc: sa.exc.SQLAlchemyError, dialect: str) -> bool:
    if not isinstance(exc, sa.exc.DBAPIError):
        return False
    if exc.connection_invalidated or isinstance(exc, sa.exc.InterfaceError):
        return True
    if isinstance(exc, sa.exc.OperationalError):
        # SQLite reports a missing table as OperationalError too: only lock contention is worth a retry
        return dialect != "sqlite" or any(word in str(exc.orig).lower() for word in ("locked", "busy"))
    return False


class SqlScoreSink:
    """Scores upserted into ``table`` keyed by (lead_id, model_version), one transaction per chunk.

    Parameters
    ----------
    url : a PostgreSQL or SQLite URL, or a bare SQLite path (see :func:`make_engine`).
    table : the scores table; runs and committed chunks go to ``<table>_runs`` and ``<table>_chunks``.
    retries : how many times a transient failure (dropped connection, lock) is retried.
    backoff : seconds before the first retry; doubled on each further retry.

    Examples
    --------
    >>> sink = SqlScoreSink("sqlite://")
    >>> run_id, done = sink.begin("leads.csv|v3", {"model_version": "v3"})
    >>> done, sink.scored_ids("v3")
    (set(), set())
    >>> sink.finish("done", {"rows_scored": 0}); sink.close()
    """

    keyed_by_lead = True  # rows are upserted by (lead_id, model_version): ids must be real lead ids

    def __init__(self, url: str, table: str = "lead_scores", *, retries: int = 5,
                 backoff: float = 0.5) -> None:
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ConfigError(f"retries: expected an integer >= 0, got {retries!r}")
        if not isinstance(backoff, int | float) or not math.isfinite(backoff) or backoff < 0:
            raise ConfigError(f"backoff: expected seconds >= 0, got {backoff!r}")
        self.engine = make_engine(url)
        self.url = self.engine.url.render_as_string(hide_password=True)
        self.dialect = self.engine.dialect.name
        if self.dialect not in ("postgresql", "sqlite"):
            self.engine.dispose()
            raise StoreError(f"cannot write scores to {self.url}: expected a postgresql or sqlite "
                             f"database, got {self.dialect}")
        self.table, self.retries, self.backoff = table, retries, float(backoff)
        self.metadata = sa.MetaData()
        self.scores_table, self.runs_table, self.chunks_table = _build_tables(self.metadata, table)
        self.run_id: str | None = None
        insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        upsert = insert(self.scores_table)
        keys = ("lead_id", "model_version")
        self._upsert = upsert.on_conflict_do_update(
            index_elements=list(keys),
            set_={c: upsert.excluded[c] for c in SCORE_COLUMNS if c not in keys},
        )
        self._chunk_insert = insert(self.chunks_table).on_conflict_do_nothing(
            index_elements=["run_id", "chunk_index"])

    def __enter__(self) -> SqlScoreSink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _transaction(self, action: str, work: Callable[[sa.Connection], _T]) -> _T:
        """Run ``work`` in one transaction, retrying transient failures with exponential backoff."""
        attempts = self.retries + 1
        attempt = 0
        while True:
            try:
                with self.engine.begin() as conn:
                    return work(conn)
            except sa.exc.SQLAlchemyError as exc:
                if not _is_transient(exc, self.dialect):
                    raise StoreError(f"{action} failed on {self.url}: {first_line(exc)}") from exc
                attempt += 1
                if attempt >= attempts:
                    raise StoreError(f"{action} failed on {self.url}: {attempts} attempts failed, "
                                     f"last error: {first_line(exc)}") from exc
                delay = self.backoff * 2 ** (attempt - 1)
                delay += random.uniform(0, 0.1 * delay)
                log.warning("%s failed on %s (attempt %d of %d), retrying in %.2f s: %s",
                            action, self.url, attempt, attempts, delay, first_line(exc))
                time.sleep(delay)

    def _require_run(self) -> str:
        if self.run_id is None:
            raise StoreError(f"no run started on {self.url} table {self.table!r}: call begin() first")
        return self.run_id

    def begin(self, run_key: str, info: dict[str, object]) -> tuple[str, set[int]]:
        """Start a run, or resume the unfinished run with the same ``run_key``.

        Creates the tables if needed. Returns the run id and the chunk indices already committed
        (empty for a new run). A run whose status is not ``'done'`` is resumed and set to ``'running'``.
        """
        runs, chunks = self.runs_table, self.chunks_table

        def work(conn: sa.Connection) -> tuple[str, set[int]]:
            self.metadata.create_all(conn, checkfirst=True)
            found = conn.execute(
                sa.select(runs.c.run_id).where(runs.c.run_key == run_key, runs.c.status != "done")
                .order_by(runs.c.started_at.desc()).limit(1)).scalar()
            if found is not None:
                conn.execute(runs.update().where(runs.c.run_id == found).values(status="running"))
                done = conn.execute(sa.select(chunks.c.chunk_index).where(chunks.c.run_id == found))
                return str(found), {int(i) for i in done.scalars()}
            run_id = uuid.uuid4().hex
            conn.execute(runs.insert().values(
                run_id=run_id, run_key=run_key, status="running", started_at=datetime.now(UTC),
                model_version=_text_or_none(info.get("model_version")),
                source=_text_or_none(info.get("source")), info=_json_text(info)))
            return run_id, set()

        run_id, done = self._transaction(f"starting run {run_key!r}", work)
        if done:
            log.info("resuming run %s (%s): %d chunks already committed", run_id, run_key, len(done))
        self.run_id = run_id
        return run_id, done

    def write(self, chunk_index: int, scores: pd.DataFrame) -> None:
        """Upsert one chunk of scores (columns ``SCORE_COLUMNS``) and mark the chunk committed, atomically.

        Raises
        ------
        StoreError
            If the rows are rejected (e.g. a missing probability), or transient failures persist after
            ``retries`` retries. Nothing of the chunk is kept in either case.
        """
        run_id = self._require_run()
        records = _score_records(scores, run_id)
        marker = {"run_id": run_id, "chunk_index": int(chunk_index), "rows": len(records),
                  "committed_at": datetime.now(UTC)}

        def work(conn: sa.Connection) -> None:
            if records:
                conn.execute(self._upsert, records)
            conn.execute(self._chunk_insert, marker)

        self._transaction(f"writing chunk {chunk_index} ({len(records)} rows) to {self.table!r}", work)

    def scored_ids(self, model_version: str) -> set[str]:
        """The lead ids that already have a score from ``model_version`` (empty if there is no table)."""
        table = self.scores_table

        def work(conn: sa.Connection) -> set[str]:
            if not sa.inspect(conn).has_table(table.name, schema=table.schema):
                return set()
            query = sa.select(table.c.lead_id).where(table.c.model_version == model_version)
            return {str(v) for v in conn.execute(query).scalars()}

        return self._transaction(f"reading scored ids from {self.table!r}", work)

    def finish(self, status: str, summary: dict[str, object]) -> None:
        """Close the run record: ``status`` ('done' or 'failed'), finish time and ``summary`` as JSON.

        ``summary['rows_scored']`` and ``summary['seconds']`` also fill their own columns.
        """
        if status not in RUN_STATUSES:
            raise StoreError(f"run status: expected one of {', '.join(RUN_STATUSES)}, got {status!r}")
        run_id = self._require_run()
        rows, seconds = _float_or_none(summary.get("rows_scored")), _float_or_none(summary.get("seconds"))
        update = self.runs_table.update().where(self.runs_table.c.run_id == run_id).values(
            status=status, finished_at=datetime.now(UTC), summary=_json_text(summary),
            rows_scored=None if rows is None else int(rows), seconds=seconds)
        self._transaction(f"finishing run {run_id}", lambda conn: conn.execute(update))

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()


def _text_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def _float_or_none(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


__all__ = ["SCORE_COLUMNS", "SqlScoreSink", "UtcDateTime", "is_sql_location", "make_engine",
           "read_sql_chunks", "safe_url"]
