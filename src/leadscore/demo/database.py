"""Write the demo CRM into a database (SQLite, PostgreSQL, MariaDB/MySQL) in the demo schema.

Tables ``leads``, ``activities`` and ``outcomes`` take the columns of the Parquet extract, with proper
types, keys and the indexes the reads need, plus change-tracking columns (``leads.updated_at``,
``activities.recorded_at``, filled with the event time of each generated row) that
:data:`leadscore.data.mapping.DEMO_MAPPING` names as ``changed_at``. The truth table stays a file.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from leadscore.core.database import first_line, make_engine, safe_url
from leadscore.core.exceptions import ConfigError, StoreError
from leadscore.demo.generator import CRMData

CRM_TABLE_NAMES = ("leads", "activities", "outcomes")
IF_EXISTS = ("fail", "replace")
CHUNK_ROWS = 50_000

_MY = ("mysql", "mariadb")
ID = sa.String(64).with_variant(mysql.VARCHAR(64, charset="utf8mb4", collation="utf8mb4_bin"), *_MY)
TIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), *_MY)
TEXT = sa.String(255)
NUMBER: sa.Double[float] = sa.Double()

Progress = Callable[[str, int, int], None]


def crm_metadata() -> sa.MetaData:
    """The demo CRM schema: tables, types, keys and indexes."""
    meta = sa.MetaData()
    profile = ("source", "vertical", "company_size", "region", "job_title")
    sa.Table("leads", meta,
             sa.Column("lead_id", ID, primary_key=True), sa.Column("created_at", TIME, nullable=False),
             *(sa.Column(name, TEXT) for name in profile), sa.Column("budget", NUMBER),
             *(sa.Column(name, TEXT) for name in ("email_domain_type", "company_name", "phone",
                                                  "sales_status")),
             sa.Column("updated_at", TIME, nullable=False),
             sa.Index("ix_leads_updated_at", "updated_at"))
    sa.Table("activities", meta,
             sa.Column("activity_id", sa.BigInteger, primary_key=True, autoincrement=False),
             sa.Column("lead_id", ID, nullable=False), sa.Column("timestamp", TIME, nullable=False),
             sa.Column("activity_type", sa.String(32), nullable=False), sa.Column("direction", sa.String(16)),
             sa.Column("duration_sec", NUMBER), sa.Column("page", TEXT), sa.Column("note", sa.Text),
             sa.Column("recorded_at", TIME, nullable=False),
             sa.Index("ix_activities_lead_id_timestamp", "lead_id", "timestamp"),
             sa.Index("ix_activities_recorded_at", "recorded_at"))
    sa.Table("outcomes", meta,
             sa.Column("lead_id", ID, primary_key=True),
             sa.Column("converted", sa.SmallInteger, nullable=False),
             sa.Column("converted_at", TIME))
    return meta


def _column_values(series: pd.Series) -> list[Any]:
    """Python values a driver takes: datetimes, floats, ints, str; missing as None."""
    missing = series.isna().to_numpy()
    if pd.api.types.is_datetime64_any_dtype(series):
        values = np.array(series.dt.to_pydatetime(), dtype=object)
    elif pd.api.types.is_float_dtype(series):
        values = series.to_numpy(dtype=object, copy=True)
    elif pd.api.types.is_integer_dtype(series):
        return series.astype("int64").tolist()
    else:
        values = series.to_numpy(dtype=object, copy=True)
    values[missing] = None
    return values.tolist()


def _frames(data: CRMData) -> dict[str, pd.DataFrame]:
    return {"leads": data.leads.assign(updated_at=data.leads["created_at"]),
            "activities": data.activities.assign(recorded_at=data.activities["timestamp"]),
            "outcomes": data.outcomes}


def _prepare_tables(engine: sa.Engine, meta: sa.MetaData, if_exists: str) -> None:
    inspector = sa.inspect(engine)
    found = [name for name in CRM_TABLE_NAMES if inspector.has_table(name)]
    if found and if_exists == "fail":
        raise StoreError(f"{safe_url(str(engine.url))} already holds CRM table(s) {', '.join(found)}: "
                         "refusing to overwrite them (use --replace, or if_exists='replace')")
    meta.drop_all(engine, checkfirst=True)
    meta.create_all(engine)


def _copy_rows(conn: sa.Connection, table: sa.Table, names: list[str], rows: list[tuple]) -> None:
    """PostgreSQL COPY through psycopg (several times faster than INSERT)."""
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    quote = conn.dialect.identifier_preparer.quote
    sql = f"COPY {quote(table.name)} ({', '.join(quote(n) for n in names)}) FROM STDIN"
    with cursor.copy(sql) as copy:
        for row in rows:
            copy.write_row(row)
    cursor.close()


def _analyze(engine: sa.Engine, tables: list[str]) -> None:
    """Planner statistics for the freshly loaded tables: without them (autovacuum off or not yet run) a
    lead-id lookup can become a scan of the whole activity log."""
    quote = engine.dialect.identifier_preparer.quote
    names = ", ".join(quote(t) for t in tables)
    statement = {"postgresql": f"ANALYZE {names}", "sqlite": "ANALYZE"}.get(engine.dialect.name,
                                                                          f"ANALYZE TABLE {names}")
    with engine.begin() as conn:
        conn.exec_driver_sql(statement)


def write_crm_database(data: CRMData, url: str, *, if_exists: str = "fail", chunk_rows: int = CHUNK_ROWS,
                       progress: Progress | None = None) -> dict[str, int]:
    """Write ``data`` (leads, activities, outcomes) into the database at ``url``; returns row counts.

    Parameters
    ----------
    url : a SQLAlchemy URL or a SQLite path (``crm.db``).
    if_exists : ``fail`` (refuse if any CRM table exists) or ``replace`` (drop and recreate them).
    chunk_rows : rows per insert batch (one transaction per table).
    progress : called as ``progress(table, rows_written, rows_total)`` after each batch.

    Raises
    ------
    StoreError
        If a CRM table exists and ``if_exists="fail"``, or the database cannot be written.
    """
    if if_exists not in IF_EXISTS:
        raise ConfigError(f"if_exists: expected one of {', '.join(IF_EXISTS)}, got {if_exists!r}")
    engine = make_engine(url)
    meta = crm_metadata()
    counts: dict[str, int] = {}
    copy = engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg"
    try:
        _prepare_tables(engine, meta, if_exists)
        for name, frame in _frames(data).items():
            table = meta.tables[name]
            names = [c.name for c in table.columns]
            with engine.begin() as conn:
                for start in range(0, len(frame), chunk_rows):
                    part = frame.iloc[start:start + chunk_rows]
                    rows = list(zip(*(_column_values(part[n]) for n in names), strict=True))
                    if copy:
                        _copy_rows(conn, table, names, rows)
                    else:
                        conn.execute(table.insert(), [dict(zip(names, r, strict=True)) for r in rows])
                    if progress is not None:
                        progress(name, min(start + chunk_rows, len(frame)), len(frame))
            counts[name] = len(frame)
        _analyze(engine, list(counts))
    except sa.exc.SQLAlchemyError as exc:
        raise StoreError(f"cannot write the demo CRM to {safe_url(url)}: {first_line(exc)}") from exc
    finally:
        engine.dispose()
    return counts
