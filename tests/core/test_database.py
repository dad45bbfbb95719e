"""Engines, safe URLs and the UTC timestamp column (core/database.py), on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from leadscore.core.database import UtcDateTime, first_line, is_sql_location, make_engine, safe_url
from leadscore.core.exceptions import StoreError


@pytest.mark.parametrize(("url", "expected"), [
    ("postgresql+psycopg://scorer:s3cret@db:5432/crm", "postgresql+psycopg://scorer:***@db:5432/crm"),
    ("mysql+pymysql://crm:p%40ss@db/crm?charset=utf8mb4", "mysql+pymysql://crm:***@db/crm?charset=utf8mb4"),
    ("postgresql+psycopg://postgres@127.0.0.1/test", "postgresql+psycopg://postgres@127.0.0.1/test"),
    ("  data/leads.sqlite ", "data/leads.sqlite"),
])
def test_safe_url_hides_passwords_only(url: str, expected: str) -> None:
    assert safe_url(url) == expected


def test_safe_url_hides_the_password_of_a_url_sqlalchemy_cannot_parse() -> None:
    assert safe_url("postgresql://scorer:s3cret@db:port/crm") == "postgresql://scorer:***@db:port/crm"
    with pytest.raises(StoreError, match="invalid database URL") as caught:
        make_engine("postgresql://scorer:s3cret@db:port/crm")
    assert "s3cret" not in str(caught.value)


def test_first_line_of_driver_errors() -> None:
    wrapped = sa.exc.OperationalError("SELECT 1", {}, ConnectionError("connection refused\nis it running?"))
    assert first_line(wrapped) == "connection refused"
    assert first_line(ValueError("")) == "ValueError"


def test_make_engine_takes_a_bare_sqlite_path_and_turns_on_wal(tmp_path: Path) -> None:
    engine = make_engine(f" {tmp_path / 'store.sqlite3'} ")
    try:
        assert engine.dialect.name == "sqlite" and engine.url.database == str(tmp_path / "store.sqlite3")
        with engine.connect() as conn:
            assert conn.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
    finally:
        engine.dispose()
    assert (tmp_path / "store.sqlite3").exists()


def test_make_engine_expands_home_and_leaves_memory_databases_alone(monkeypatch: pytest.MonkeyPatch,
                                                                    tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    engine = make_engine("~/scores.db")
    assert engine.url.database == str(tmp_path / "scores.db")
    engine.dispose()
    memory = make_engine("sqlite://")
    try:
        with memory.connect() as conn:
            assert conn.execute(sa.text("PRAGMA journal_mode")).scalar() == "memory"
    finally:
        memory.dispose()


@pytest.mark.parametrize(("url", "message"), [
    ("nosuch://scorer:s3cret@db/crm",
     r"unsupported database URL 'nosuch://scorer:\*\*\*@db/crm': no SQLAlchemy dialect for 'nosuch'"),
    ("leads.csv",
     r"invalid database URL 'leads.csv': expected dialect\[\+driver\]://\.\.\. or a path ending "
     r"\.db, \.sqlite, \.sqlite3"),
    ("postgresql+pg8000://scorer:s3cret@db/crm",
     r"cannot use database URL 'postgresql\+pg8000://scorer:\*\*\*@db/crm': driver not installed "
     r"\(No module named 'pg8000'\)"),
])
def test_make_engine_errors_say_what_was_expected_and_never_show_the_password(url: str, message: str) -> None:
    with pytest.raises(StoreError, match=message) as caught:
        make_engine(url)
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize(("text", "expected"), [
    ("postgresql+psycopg://u@h/db", True), ("sqlite:///scores.db", True), ("LEADS.SQLITE", True),
    ("store.db", True), ("mysql+pymysql://u@h/crm", True),
    ("leads.csv", False), ("s3://bucket/leads.csv", False), ("nosuch://h/db", False),
    ("data/leads.parquet", False),
])
def test_is_sql_location(text: str, expected: bool) -> None:
    assert is_sql_location(text) is expected


# --- UtcDateTime ----------------------------------------------------------------------------------------

PLUS_TWO = timezone(timedelta(hours=2))
STAMPS = [datetime(2025, 3, 30, 1, 59, 59, 123456, tzinfo=UTC),           # microseconds kept
          datetime(2025, 3, 30, 4, 30, tzinfo=PLUS_TWO),                  # another zone: the same instant
          datetime(2024, 12, 31, 23, 0),                                  # naive: taken as UTC
          None]


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    url = (f"sqlite:///{tmp_path / 'stamps.db'}" if request.param == "sqlite"
           else request.getfixturevalue("pg_url"))
    engine = make_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture
def stamps(engine: sa.Engine) -> Iterator[sa.Table]:
    table = sa.Table(f"stamps_{uuid.uuid4().hex[:8]}", sa.MetaData(),
                     sa.Column("id", sa.Integer, primary_key=True), sa.Column("at", UtcDateTime()))
    table.create(engine)
    yield table
    table.drop(engine)


def test_utc_datetime_round_trips_as_aware_utc(engine: sa.Engine, stamps: sa.Table) -> None:
    with engine.begin() as conn:
        conn.execute(stamps.insert(), [{"id": i, "at": at} for i, at in enumerate(STAMPS)])
    with engine.connect() as conn:
        back = [row.at for row in conn.execute(sa.select(stamps).order_by(stamps.c.id))]
    assert back[3] is None
    for sent, got in zip(STAMPS[:3], back[:3], strict=True):
        assert got.tzinfo is not None and got.utcoffset() == timedelta(0)
        assert got == (sent if sent.tzinfo else sent.replace(tzinfo=UTC))
    assert back[0].microsecond == 123456 and back[1] == datetime(2025, 3, 30, 2, 30, tzinfo=UTC)


def test_utc_datetime_compares_instants_in_queries(engine: sa.Engine, stamps: sa.Table) -> None:
    with engine.begin() as conn:
        conn.execute(stamps.insert(), [{"id": i, "at": at} for i, at in enumerate(STAMPS[:3])])
        since = datetime(2025, 3, 30, 4, 0, tzinfo=PLUS_TWO)  # 02:00 UTC
        query = sa.select(stamps.c.id).where(stamps.c.at >= since).order_by(stamps.c.id)
        assert list(conn.execute(query).scalars()) == [1]


def test_utc_datetime_is_stored_naive_in_utc_on_sqlite(tmp_path: Path) -> None:
    engine = make_engine(tmp_path / "raw.db")
    try:
        table = sa.Table("t", sa.MetaData(), sa.Column("at", UtcDateTime()))
        table.create(engine)
        with engine.begin() as conn:
            conn.execute(table.insert(), [{"at": datetime(2025, 1, 1, 12, 0, tzinfo=PLUS_TWO)}])
            raw = conn.execute(sa.text("SELECT at FROM t")).scalar()
    finally:
        engine.dispose()
    assert raw.startswith("2025-01-01 10:00:00") and "+" not in raw
