"""leadscore.scoring.sql against real databases: SQLite files in tmp_path and the PostgreSQL test server."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from leadscore.core.exceptions import StoreError
from leadscore.scoring.sql import (
    SCORE_COLUMNS,
    SqlScoreSink,
    is_sql_location,
    make_engine,
    read_sql_chunks,
)

SCORED_AT = pd.Timestamp("2024-05-01 12:30:00.123456", tz="Europe/Berlin")


@pytest.fixture
def table() -> str:
    return f"scores_{uuid.uuid4().hex[:12]}"


def _drop_tables(url: str, names: list[str]) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for name in names:
            conn.execute(sa.text(f'DROP TABLE IF EXISTS "{name}"'))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, table: str) -> Iterator[str]:
    """A database URL; on PostgreSQL every table named after ``table`` is dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'scores.db'}"
        return
    url = request.getfixturevalue("pg_url")
    yield url
    _drop_tables(url, [table, f"{table}_runs", f"{table}_chunks", f"{table}_leads"])


def make_scores(ids: list[object], model_version: str = "v1", probability: float = 0.25) -> pd.DataFrame:
    n = len(ids)
    prob = np.linspace(probability, probability + 0.5, n) if n > 1 else np.full(n, probability)
    return pd.DataFrame({
        "lead_id": ids,
        "model_version": model_version,
        "probability": prob,
        "score": np.rint(prob * 100).astype(np.int16),
        "tier": ["A" if p > 0.5 else "B" for p in prob],
        "action": "call",
        "confidence": [np.nan if i == 0 else 0.8 for i in range(n)],
        "reasons": [json.dumps([f"reason {i}", "budget: high (+5)"]) for i in range(n)],
        "scored_at": SCORED_AT,
        "run_id": None,
    })[list(SCORE_COLUMNS)]


def read_scores(sink: SqlScoreSink) -> list[dict[str, object]]:
    table = sink.scores_table
    query = sa.select(table).order_by(table.c.model_version, table.c.lead_id)
    with sink.engine.connect() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]


def read_run(sink: SqlScoreSink, run_id: str) -> dict[str, object]:
    with sink.engine.connect() as conn:
        row = conn.execute(sa.select(sink.runs_table).where(sink.runs_table.c.run_id == run_id)).mappings()
        return dict(row.one())


def committed_chunks(sink: SqlScoreSink, run_id: str) -> set[int]:
    chunks = sink.chunks_table
    with sink.engine.connect() as conn:
        return set(conn.execute(sa.select(chunks.c.chunk_index).where(chunks.c.run_id == run_id)).scalars())


def test_round_trip(db_url: str, table: str) -> None:
    frame = make_scores([101, 102, 103, 104, 105])  # integer ids are stored as text
    with SqlScoreSink(db_url, table) as sink:
        run_id, done = sink.begin("leads.csv|v1", {"model_version": "v1", "source": "leads.csv"})
        assert done == set()
        sink.write(0, frame.iloc[:3])
        sink.write(1, frame.iloc[3:])
        summary = {"rows_in": 5, "rows_scored": 5, "rows_skipped": 0, "seconds": 1.5, "errors": []}
        sink.finish("done", summary)
        rows = read_scores(sink)
        run = read_run(sink, run_id)
        assert committed_chunks(sink, run_id) == {0, 1}

    assert [r["lead_id"] for r in rows] == ["101", "102", "103", "104", "105"]
    for row, (_, expected) in zip(rows, frame.iterrows(), strict=True):
        assert type(row["probability"]) is float and row["probability"] == pytest.approx(expected.probability)
        assert type(row["score"]) is int and row["score"] == expected.score
        assert isinstance(row["reasons"], str) and json.loads(row["reasons"]) == json.loads(expected.reasons)
        assert row["scored_at"].tzinfo is not None and row["scored_at"] == SCORED_AT.to_pydatetime()
        assert (row["tier"], row["action"], row["run_id"]) == (expected.tier, "call", run_id)
    assert rows[0]["confidence"] is None and rows[1]["confidence"] == pytest.approx(0.8)
    assert (run["status"], run["rows_scored"], run["seconds"]) == ("done", 5, 1.5)
    assert (run["model_version"], run["source"]) == ("v1", "leads.csv")
    assert json.loads(str(run["summary"])) == summary
    assert json.loads(str(run["info"])) == {"model_version": "v1", "source": "leads.csv"}
    started, finished = run["started_at"], run["finished_at"]
    assert isinstance(started, datetime) and isinstance(finished, datetime)
    assert started.tzinfo is not None and started <= finished <= datetime.now(UTC)


def test_upsert_updates_and_keys_on_model_version(db_url: str, table: str) -> None:
    with SqlScoreSink(db_url, table) as sink:
        assert sink.scored_ids("v1") == set()  # no table yet
        sink.begin("run", {"model_version": "v1"})
        sink.write(0, make_scores(["a", "b"], probability=0.1))
        sink.write(1, make_scores(["a"], probability=0.9))
        sink.write(1, make_scores(["a"], probability=0.9))  # a retried chunk is harmless
        probabilities = {r["lead_id"]: r["probability"] for r in read_scores(sink)}
        assert probabilities == pytest.approx({"a": 0.9, "b": 0.6})
        sink.write(2, make_scores(["a"], model_version="v2", probability=0.3))
        rows = read_scores(sink)
        assert [(r["model_version"], r["lead_id"]) for r in rows] == [("v1", "a"), ("v1", "b"), ("v2", "a")]
        assert sink.scored_ids("v1") == {"a", "b"}
        assert sink.scored_ids("v2") == {"a"}
        assert sink.scored_ids("v3") == set()


def test_resume_unfinished_run(db_url: str, table: str) -> None:
    with SqlScoreSink(db_url, table) as sink:
        run_id, _ = sink.begin("leads.csv|v1", {"model_version": "v1"})
        sink.write(0, make_scores(["a", "b"]))
        sink.finish("failed", {"rows_scored": 2, "errors": ["boom"]})
    with SqlScoreSink(db_url, table) as sink:
        assert sink.begin("leads.csv|v1", {"model_version": "v1"}) == (run_id, {0})
        assert read_run(sink, run_id)["status"] == "running"
        sink.write(1, make_scores(["c"]))
        sink.write(2, make_scores([]).astype(object))  # every row filtered out: still a committed chunk
        assert committed_chunks(sink, run_id) == {0, 1, 2}
        sink.finish("done", {"rows_scored": 3})
        other_id, other_done = sink.begin("other.csv|v1", {"model_version": "v1"})
        assert other_id != run_id and other_done == set()
        again_id, again_done = sink.begin("leads.csv|v1", {"model_version": "v1"})  # done: start afresh
        assert again_id not in (run_id, other_id) and again_done == set()


def test_failed_chunk_leaves_nothing_behind(db_url: str, table: str,
                                            caplog: pytest.LogCaptureFixture) -> None:
    bad = make_scores(["c", "d", "e"])
    bad.loc[2, "probability"] = np.nan  # NOT NULL violation on the last row
    with SqlScoreSink(db_url, table, backoff=5.0) as sink:
        run_id, _ = sink.begin("run", {"model_version": "v1"})
        sink.write(0, make_scores(["a", "b"]))
        with caplog.at_level(logging.WARNING, logger="leadscore.scoring.sql"), \
                pytest.raises(StoreError, match=r"writing chunk 1 \(3 rows\).*(NOT NULL|not-null)"):
            sink.write(1, bad)
        assert not caplog.records  # an integrity error is not retried
        assert [r["lead_id"] for r in read_scores(sink)] == ["a", "b"]
        assert committed_chunks(sink, run_id) == {0}


def test_write_rejects_incomplete_frames(tmp_path: Path) -> None:
    with SqlScoreSink(str(tmp_path / "s.db")) as sink:
        with pytest.raises(StoreError, match="call begin"):
            sink.write(0, make_scores(["a"]))
        sink.begin("run", {})
        with pytest.raises(StoreError, match="missing probability, score"):
            sink.write(0, make_scores(["a"]).drop(columns=["probability", "score"]))
        with pytest.raises(StoreError, match="expected one of done, failed, got 'ok'"):
            sink.finish("ok", {})


@pytest.mark.parametrize("pre_ping", [True, False], ids=["pre_ping", "retry"])
def test_dropped_connection_is_recovered(pg_url: str, table: str, pre_ping: bool,
                                         caplog: pytest.LogCaptureFixture) -> None:
    """The pool's pre-ping replaces a killed idle connection; without it, the write is retried."""
    app = f"leadscore_test_{uuid.uuid4().hex[:12]}"
    try:
        with SqlScoreSink(f"{pg_url}?application_name={app}", table, backoff=0.05) as sink:
            if not pre_ping:
                sink.engine.dispose()
                sink.engine = sa.create_engine(sink.engine.url, pool_pre_ping=False)
            sink.begin("run", {"model_version": "v1"})
            sink.write(0, make_scores(["a", "b"]))
            admin = sa.create_engine(pg_url)
            with admin.begin() as conn:
                killed = conn.execute(sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'test' "
                    "AND pid <> pg_backend_pid() AND application_name = :app"), {"app": app}).scalars().all()
            admin.dispose()
            assert killed and all(killed)
            with caplog.at_level(logging.WARNING, logger="leadscore.scoring.sql"):
                sink.write(1, make_scores(["c", "d"]))
            assert [r["lead_id"] for r in read_scores(sink)] == ["a", "b", "c", "d"]
            assert any("retrying" in r.getMessage() for r in caplog.records) is not pre_ping
    finally:
        _drop_tables(pg_url, [table, f"{table}_runs", f"{table}_chunks"])


def test_locked_database_is_retried_then_gives_up(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "locked.db"
    with SqlScoreSink(f"sqlite:///{path}?timeout=0.05", retries=6, backoff=0.05) as sink:
        sink.begin("run", {})
        locker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        locker.execute("BEGIN EXCLUSIVE")
        release = threading.Timer(0.3, locker.rollback)
        release.start()
        with caplog.at_level(logging.WARNING, logger="leadscore.scoring.sql"):
            sink.write(0, make_scores(["a"]))
        release.join()
        assert any("retrying" in r.getMessage() and "locked" in r.getMessage() for r in caplog.records)
        assert [r["lead_id"] for r in read_scores(sink)] == ["a"]

        sink.retries, sink.backoff = 2, 0.01
        locker.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(StoreError, match="3 attempts failed, last error: database is locked"):
                sink.write(1, make_scores(["b"]))
        finally:
            locker.rollback()
            locker.close()
        assert committed_chunks(sink, str(sink.run_id)) == {0}


@pytest.fixture
def leads_table(db_url: str, table: str) -> tuple[str, str, pd.DataFrame]:
    leads = pd.DataFrame({"lead_id": [f"L{i:02d}" for i in range(10)], "budget": np.arange(10) * 100.0,
                          "source": ["web", "referral"] * 5})
    name = f"{table}_leads"
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        leads.sample(frac=1, random_state=0).to_sql(name, conn, index=False)  # stored out of order
    engine.dispose()
    return db_url, name, leads


def test_read_table_in_deterministic_chunks(leads_table: tuple[str, str, pd.DataFrame]) -> None:
    url, name, leads = leads_table
    chunks = list(read_sql_chunks(url, name, chunk_size=4, order_by="lead_id"))
    assert [len(c) for c in chunks] == [4, 4, 2]
    got = pd.concat(chunks, ignore_index=True)
    pd.testing.assert_frame_equal(got, leads, check_dtype=False)


def test_read_query(leads_table: tuple[str, str, pd.DataFrame]) -> None:
    url, name, leads = leads_table
    query = f'  select lead_id, budget from "{name}" where source = \'referral\' order by lead_id;'
    got = pd.concat(read_sql_chunks(url, query, chunk_size=2), ignore_index=True)
    assert got["lead_id"].tolist() == ["L01", "L03", "L05", "L07", "L09"]
    cte = f'WITH big AS (SELECT * FROM "{name}" WHERE budget >= 500) SELECT lead_id FROM big'
    got = pd.concat(read_sql_chunks(url, cte, chunk_size=100, order_by="lead_id"), ignore_index=True)
    assert got["lead_id"].tolist() == ["L05", "L06", "L07", "L08", "L09"]
    assert list(read_sql_chunks(url, f'SELECT * FROM "{name}" WHERE budget < 0', chunk_size=5)) == []


def test_read_errors_name_the_source(db_url: str, tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    with pytest.raises(StoreError, match="SQLite database not found"):
        read_sql_chunks(str(missing), "leads", chunk_size=10)
    assert not missing.exists()
    engine = make_engine(db_url)  # create the database file (SQLite)
    with engine.connect():
        pass
    engine.dispose()
    with pytest.raises(StoreError, match="table 'no_such_leads' not found"):
        next(read_sql_chunks(db_url, "no_such_leads", chunk_size=10))
    with pytest.raises(StoreError, match="query 'SELECT nope FROM nowhere'"):
        next(read_sql_chunks(db_url, "SELECT nope FROM nowhere", chunk_size=10))


def test_unreachable_server_hides_password() -> None:
    url = "postgresql+psycopg://scorer:s3cret@127.0.0.1:1/test?connect_timeout=2"
    with pytest.raises(StoreError, match="cannot connect to postgresql") as info:
        next(read_sql_chunks(url, "leads", chunk_size=10))
    assert "s3cret" not in str(info.value) and "***" in str(info.value)


@pytest.mark.parametrize("url", ["nosuchdialect://host/db", "postgresql+nosuchdriver://h/db", "not a url"])
def test_make_engine_rejects_bad_urls(url: str) -> None:
    with pytest.raises(StoreError, match="database URL"):
        make_engine(url)


def test_make_engine_bare_path_creates_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "scores.db"
    engine = make_engine(str(path))
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT 1")).scalar() == 1
    engine.dispose()
    assert engine.dialect.name == "sqlite" and path.exists()


@pytest.mark.parametrize(("text", "expected"), [
    ("sqlite:///x.db", True), ("postgresql+psycopg://u@h/db", True), ("scores.sqlite3", True),
    ("out/Scores.DB", True), ("s3://bucket/leads.csv", False), ("leads.csv", False), ("leads.parquet", False),
])
def test_is_sql_location(text: str, expected: bool) -> None:
    assert is_sql_location(text) is expected
