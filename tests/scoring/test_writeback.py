"""Score write-back into the CRM database: one row per lead, mapped lead columns, one transaction."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
import sqlalchemy as sa

from leadscore.core.exceptions import ConfigError, StoreError
from leadscore.scoring.writeback import ScoreWriteBack

MARIADB_SERVER = "mysql+pymysql://root@127.0.0.1:3306"


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def crm_url(request, tmp_path, pg_url):
    """An empty database of each engine with a small lead table; dropped afterwards."""
    name = f"ls_wb_{uuid.uuid4().hex[:10]}"
    if request.param == "sqlite":
        url, admin, drop = f"sqlite:///{tmp_path / 'crm.db'}", None, None
    else:
        server = pg_url.rsplit("/", 1)[0] if request.param == "postgresql" else MARIADB_SERVER
        admin = sa.create_engine(f"{server}/{'postgres' if request.param == 'postgresql' else 'test'}",
                                 isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {name}"))
        url, drop = f"{server}/{name}", f"DROP DATABASE {name}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text('CREATE TABLE crm_lead (lead_key VARCHAR(64) PRIMARY KEY, company VARCHAR(64), '
                             'score__c INTEGER, tier__c VARCHAR(64))'))
        conn.execute(sa.text("INSERT INTO crm_lead (lead_key, company) VALUES ('A', 'Acme'), ('B', 'Bolt')"))
    engine.dispose()
    yield url
    if admin is not None:
        with admin.connect() as conn:
            if request.param == "postgresql":
                conn.execute(sa.text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                     f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"))
            conn.execute(sa.text(drop))
        admin.dispose()


def _result(lead, score, version="v1", at=None):
    at = at or datetime(2026, 1, 5, 10, 30, 15, 123456, tzinfo=UTC)
    return {"lead_id": lead, "score": score, "probability": score / 100,
            "tier": "HIGH" if score > 50 else "LOW",
            "action": "Call", "confidence": 0.8, "reasons": {"positive": [{"feature": "x", "points": 3}]},
            "model_version": version, "scored_at": at.isoformat()}


def _sink(url, **kwargs):
    return ScoreWriteBack(url, lead_table="crm_lead", lead_id_column="lead_key",
                          lead_columns={"score": "score__c", "tier": "tier__c"}, **kwargs)


def test_scores_land_in_lead_scores_and_on_the_lead(crm_url):
    sink = _sink(crm_url)
    assert sink.write([_result("A", 80), _result("B", 20)]) == 2
    stored = sink.read().set_index("lead_id")
    assert stored.loc["A", "score"] == 80 and stored.loc["B", "tier"] == "LOW"
    assert json.loads(stored.loc["A", "reasons"]) == {"positive": [{"feature": "x", "points": 3}]}
    assert pd.Timestamp(stored.loc["A", "scored_at"]) == pd.Timestamp("2026-01-05 10:30:15.123456", tz="UTC")
    with sink.engine.connect() as conn:
        rows = dict(conn.execute(sa.text("SELECT lead_key, score__c FROM crm_lead")).all())
    assert rows == {"A": 80, "B": 20}
    sink.close()


def test_upsert_keeps_one_row_per_lead_and_never_goes_back_in_time(crm_url):
    sink = _sink(crm_url)
    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    sink.write([_result("A", 40, "v1", t0)])
    sink.write([_result("A", 90, "v2", t0 + timedelta(minutes=5))])
    sink.write([_result("A", 10, "v0", t0 - timedelta(minutes=5))])  # older: ignored
    stored = sink.read(["A"])
    assert len(stored) == 1
    assert (stored.loc[0, "score"], stored.loc[0, "model_version"]) == (90, "v2")
    sink.close()


def test_a_failing_batch_writes_nothing(crm_url):
    sink = _sink(crm_url)
    sink.write([_result("A", 40)])

    def fail(conn):
        raise sa.exc.OperationalError("boom", {}, Exception("injected failure"))

    with pytest.raises(StoreError, match="injected failure"):
        sink.write([_result("A", 99, "v9", datetime(2027, 1, 1, tzinfo=UTC)), _result("B", 99, "v9")],
                   also=fail)
    stored = sink.read().set_index("lead_id")
    assert list(stored.index) == ["A"] and stored.loc["A", "score"] == 40
    with sink.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT score__c FROM crm_lead WHERE lead_key = 'B'")).scalar() is None
    sink.close()


def test_configuration_errors_are_one_line(tmp_path):
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE crm_lead (lead_key TEXT PRIMARY KEY)"))
        conn.execute(sa.text("CREATE TABLE lead_scores (lead_id TEXT, model_version TEXT, run_id TEXT)"))
    with pytest.raises(ConfigError, match="unknown score field.*colour"):
        ScoreWriteBack(url, lead_table="crm_lead", lead_id_column="lead_key", lead_columns={"colour": "c"})
    with pytest.raises(StoreError, match="crm_lead has no column score__c"):
        ScoreWriteBack(url, table="current", lead_table="crm_lead", lead_id_column="lead_key",
                       lead_columns={"score": "score__c"})
    with pytest.raises(StoreError, match="exists with other columns"):
        ScoreWriteBack(url)
    engine.dispose()



RACER = """
import sys, time
from leadscore.scoring.writeback import ScoreWriteBack
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # both start at the same instant
ScoreWriteBack(sys.argv[1]).close()
print("ok")
"""


def test_workers_starting_together_both_get_the_score_table(pg_url):
    """Two API workers open the write-back at the same moment on a database without lead_scores: the
    one that loses the race to create it finds it made (PostgreSQL raised a duplicate-type error)."""
    import subprocess
    import sys
    import time

    from conftest import fresh_database

    for _ in range(3):
        with fresh_database(pg_url) as url:
            at = str(time.time() + 3.0)
            procs = [subprocess.Popen([sys.executable, "-c", RACER, url, at], stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True) for _ in range(2)]
            outputs = [p.communicate(timeout=60)[0] for p in procs]
            assert [p.returncode for p in procs] == [0, 0], outputs
            assert all(out.strip().endswith("ok") for out in outputs)
