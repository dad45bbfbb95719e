"""Database connections every layer shares: engines from URLs or SQLite paths, safe URLs for messages,
and a UTC timestamp column type (SQLAlchemy Core)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from leadscore.core.exceptions import StoreError

SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@/\s]*@")


def safe_url(url: str) -> str:
    """``url`` fit for logs and messages: any password replaced by ``***``; a bare path unchanged.

    Examples
    --------
    >>> safe_url("postgresql+psycopg://scorer:s3cret@db:5432/crm")
    'postgresql+psycopg://scorer:***@db:5432/crm'
    """
    text = str(url).strip()
    if "://" not in text:
        return text
    try:
        return sa.make_url(text).render_as_string(hide_password=True)
    except (sa.exc.ArgumentError, ValueError):  # ValueError: a port that is not a number
        return _PASSWORD.sub(r"\1***@", text)


def first_line(exc: BaseException) -> str:
    """The first line of a (database) error message, for one-line errors."""
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    return lines[0] if lines else type(cause).__name__


def make_engine(url: str) -> sa.Engine:
    """A SQLAlchemy engine (``pool_pre_ping=True``) for a URL or a bare SQLite path.

    Parameters
    ----------
    url : ``sqlite:///scores.db``, ``postgresql+psycopg://user@host/db``, ... or a path ending
        ``.db``, ``.sqlite`` or ``.sqlite3`` (a SQLite file, created on first connection).

    Raises
    ------
    StoreError
        If the URL cannot be parsed, names no known dialect, or its driver is not installed.
    """
    text = str(url).strip()
    try:
        if "://" not in text and text.lower().endswith(SQLITE_SUFFIXES):
            parsed = sa.URL.create("sqlite", database=str(Path(text).expanduser()))
        else:
            parsed = sa.make_url(text)
        engine = sa.create_engine(parsed, pool_pre_ping=True)
    except sa.exc.NoSuchModuleError as exc:
        raise StoreError(f"unsupported database URL {safe_url(text)!r}: no SQLAlchemy dialect "
                         f"for {text.partition('://')[0]!r} (expected e.g. sqlite:///x.db)") from exc
    except (sa.exc.ArgumentError, ValueError) as exc:  # ValueError: a port that is not a number
        raise StoreError(f"invalid database URL {safe_url(text)!r}: expected dialect[+driver]://... "
                         f"or a path ending {', '.join(SQLITE_SUFFIXES)}") from exc
    except ImportError as exc:
        raise StoreError(f"cannot use database URL {safe_url(text)!r}: driver not installed "
                         f"({first_line(exc)})") from exc
    if engine.dialect.name == "sqlite" and parsed.database not in (None, "", ":memory:"):
        sa.event.listen(engine, "connect", _sqlite_wal)
    return engine


def _sqlite_wal(dbapi_connection: Any, _record: Any) -> None:
    """Write-ahead log: readers (a streaming source) and a writer (the sink, the prediction log) in the
    same SQLite file do not block each other (a writer waits for another writer: the driver's timeout,
    5 s unless the URL sets ``?timeout=``)."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def is_sql_location(text: str) -> bool:
    """True if :func:`make_engine` would take ``text`` as a database rather than a file path.

    Examples
    --------
    >>> is_sql_location("postgresql+psycopg://u@h/db"), is_sql_location("leads.sqlite")
    (True, True)
    >>> is_sql_location("s3://bucket/leads.csv"), is_sql_location("leads.csv")
    (False, False)
    """
    text = str(text).strip()
    if "://" not in text:
        return text.lower().endswith(SQLITE_SUFFIXES)
    try:
        sa.make_url(text).get_dialect()
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError, ValueError):
        return False
    return True


NAIVE_UTC_DIALECTS = ("sqlite", "mysql", "mariadb")  # no time-zone type: values are stored naive, in UTC


class UtcDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite and MariaDB/MySQL store them naive, in UTC;
    MariaDB/MySQL with microseconds)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(self.impl)

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        value = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name in NAIVE_UTC_DIALECTS else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
