"""Outcome import: rows read or rejected with their reason, idempotent upserts (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import uuid

import pandas as pd
import pytest
import sqlalchemy as sa

from leadscore.artifacts.paths import LOG_TABLE
from leadscore.cli.main import main
from leadscore.monitoring.outcomes import OutcomeStore, parse_outcomes
from leadscore.monitoring.predlog import open_database

ROWS = pd.DataFrame({
    "lead_id": ["L1", "L2", "L3", "", "L5", "L6", "L7", "L1"],
    "converted": ["yes", "no", "1", "yes", "maybe", "0", "true", "Won"],
    "converted_at": ["2025-03-01", "", None, "2025-03-02", None, "2025-04-01", "not a date", "2025-03-05"],
})


def test_parse_keeps_good_rows_and_rejects_bad_ones_with_a_reason():
    parsed = parse_outcomes(ROWS)
    assert [r["lead_id"] for r in parsed.rows] == ["L2", "L3", "L1"]  # L1 twice: the later row wins
    assert parsed.superseded == 1
    by_id = {r["lead_id"]: r for r in parsed.rows}
    assert by_id["L1"]["converted"] is True
    assert by_id["L1"]["converted_at"].isoformat().startswith("2025-03-05")
    assert by_id["L2"] == {"lead_id": "L2", "converted": False, "converted_at": None}
    reasons = dict(zip(parsed.rejected["lead_id"], parsed.rejected["reason"], strict=True))
    assert reasons == {"": "empty lead id", "L5": "'converted' is not yes/no, 1/0 or true/false",
                       "L6": "'converted_at' given for a lead that did not convert",
                       "L7": "'converted_at' is not a date"}
    assert len(parsed.rows) + parsed.superseded + len(parsed.rejected) == len(ROWS)  # nothing lost


def store(url: str) -> OutcomeStore:
    table = f"outcomes_{uuid.uuid4().hex[:8]}"
    engine, _, outcomes = open_database(url, f"log_{table}", table)
    return OutcomeStore(engine, outcomes)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_record_many_is_an_idempotent_upsert(backend, tmp_path, request):
    url = f"sqlite:///{tmp_path / 's.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    outcomes = store(url)
    rows = parse_outcomes(ROWS).rows
    assert outcomes.record_many(rows) == 3
    first = outcomes.frame().drop(columns="recorded_at").sort_values("lead_id").reset_index(drop=True)
    outcomes.record_many(rows)
    again = outcomes.frame().drop(columns="recorded_at").sort_values("lead_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(first, again)
    outcomes.record("L2", True, pd.Timestamp("2025-05-01", tz="UTC").to_pydatetime())  # a later change
    assert outcomes.get("L2")["converted"] is True and len(outcomes.frame()) == 3


def test_cli_import_from_a_file_and_from_a_query(tmp_path, capsys):
    ROWS.to_csv(tmp_path / "outcomes.csv", index=False)
    db = f"sqlite:///{tmp_path / 'store.db'}"
    assert main(["outcomes", "import", "--input", str(tmp_path / "outcomes.csv"), "--db", db, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc == {**doc, "rows": 8, "stored": 3, "rejected": 4, "superseded": 1}
    rejected = pd.read_csv(doc["rejects_file"], keep_default_na=False)
    assert list(rejected["lead_id"]) == ["", "L5", "L6", "L7"] and "reason" in rejected
    assert main(["outcomes", "import", "--input", str(tmp_path / "outcomes.csv"), "--db", db]) == 0
    out = capsys.readouterr().out
    assert "3 outcome(s) stored" in out and "4 row(s) rejected" in out and "1 x empty lead id" in out
    source = sa.create_engine(f"sqlite:///{tmp_path / 'crm.db'}")
    pd.DataFrame({"id": ["L9"], "won": [1], "closed": ["2025-06-01"]}).to_sql("deals", source, index=False)
    assert main(["outcomes", "import", "--source", f"sqlite:///{tmp_path / 'crm.db'}", "--db", db,
                 "--query", "SELECT id AS lead_id, won AS converted, closed AS converted_at FROM deals"]) == 0
    engine, _, table = open_database(db, LOG_TABLE, "outcomes")
    assert set(OutcomeStore(engine, table).frame()["lead_id"]) == {"L1", "L2", "L3", "L9"}


def test_cli_import_errors_are_one_line(tmp_path, capsys):
    pd.DataFrame({"id": ["a"]}).to_csv(tmp_path / "x.csv", index=False)
    db = f"sqlite:///{tmp_path / 'store.db'}"
    assert main(["outcomes", "import", "--input", str(tmp_path / "x.csv"), "--db", db]) == 2
    assert "column 'lead_id' not found" in capsys.readouterr().err
    assert main(["outcomes", "import", "--db", db]) == 2
    assert "give either --input FILE or --query SQL" in capsys.readouterr().err


def _indexes(engine):
    import sqlalchemy as sa

    return {i["name"] for i in sa.inspect(engine).get_indexes("prediction_log")}


def test_frame_of_selected_leads_and_the_time_index(tmp_path):
    import sqlalchemy as sa

    from leadscore.monitoring.outcomes import OutcomeStore
    from leadscore.monitoring.predlog import open_database

    url = f"sqlite:///{tmp_path / 'store.db'}"
    engine, log, outcomes = open_database(url, "prediction_log", "outcomes")
    store = OutcomeStore(engine, outcomes)
    for lead, converted in (("a", True), ("b", False), ("c", True)):
        store.record(lead, converted, None)
    chosen = sa.select(outcomes.c.lead_id).where(outcomes.c.lead_id != "b")
    assert sorted(store.frame(chosen)["lead_id"]) == ["a", "c"]
    assert sorted(store.frame()["lead_id"]) == ["a", "b", "c"]
    assert "ix_prediction_log_scored_at" in _indexes(engine)
    # a log made before the index existed gets it when opened
    with engine.begin() as conn:
        conn.execute(sa.text("DROP INDEX ix_prediction_log_scored_at"))
    engine.dispose()
    engine, _, _ = open_database(url, "prediction_log", "outcomes")
    assert "ix_prediction_log_scored_at" in _indexes(engine)
    engine.dispose()
