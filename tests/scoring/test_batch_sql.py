"""Batch scoring from and into real databases (SQLite file, PostgreSQL server): round trips through the
CLI, a crash mid-run that leaves only whole chunks and resumes, a connection killed mid-run, incremental."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from conftest import PG_URL, make_flat_leads

from leadscore.artifacts.bundle import save_bundle
from leadscore.cli.main import main
from leadscore.scoring.batch import BatchOptions, SqlSource, run_batch
from leadscore.scoring.scorer import Scorer
from leadscore.scoring.sql import SqlScoreSink
from leadscore.training.fit import fit_table

NOW = datetime(2024, 3, 1, tzinfo=UTC)


class Boom(RuntimeError):
    pass


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    result = fit_table(make_flat_leads(500, seed=3), target="converted", id_column="lead_id",
                       time_column="created", candidates=["logistic"])
    return save_bundle(result.bundle, tmp_path_factory.mktemp("m") / "model")


@pytest.fixture(scope="module")
def leads() -> pd.DataFrame:
    return make_flat_leads(230, seed=9).drop(columns=["converted"])


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path, leads) -> Iterator[tuple[str, str]]:
    """(URL, leads table name) with the leads loaded; PostgreSQL tables dropped afterwards."""
    name = f"leads_{uuid.uuid4().hex[:10]}"
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'crm.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    engine = sa.create_engine(url)
    leads.to_sql(name, engine, index=False)
    yield url, name
    with engine.begin() as conn:
        for table in (name, f"{name}_scores", f"{name}_scores_runs", f"{name}_scores_chunks"):
            conn.execute(sa.text(f'DROP TABLE IF EXISTS "{table}"'))
    engine.dispose()


def read(url: str, table: str) -> pd.DataFrame:
    engine = sa.create_engine(url)
    try:
        return pd.read_sql_table(table, engine)
    finally:
        engine.dispose()


def test_cli_round_trip(db, model_dir, leads, capsys):
    url, name = db
    assert main(["score", "--model", str(model_dir), "--input", url, "--query", name, "--output", url,
                 "--table", f"{name}_scores", "--chunk-size", "100", "-q"]) == 0
    assert "scored 230 of 230 leads" in capsys.readouterr().out
    scores = read(url, f"{name}_scores").sort_values("lead_id").reset_index(drop=True)
    expected = Scorer.load(model_dir).score_frame(leads).sort_values("lead_id").reset_index(drop=True)
    assert scores["lead_id"].tolist() == expected["lead_id"].tolist()
    np.testing.assert_allclose(scores["probability"], expected["probability"])
    assert scores["reasons"].tolist() == expected["reasons"].tolist()
    assert (scores["score"] == expected["score"]).all() and (scores["tier"] == expected["tier"]).all()
    runs = read(url, f"{name}_scores_runs")
    assert runs["status"].tolist() == ["done"] and runs["rows_scored"].tolist() == [230]

    # again with --incremental: nothing new to score, nothing duplicated
    assert main(["score", "--model", str(model_dir), "--input", url, "--query", name, "--output", url,
                 "--table", f"{name}_scores", "--incremental", "-q"]) == 0
    assert "scored 0 of 230 leads" in capsys.readouterr().out
    assert len(read(url, f"{name}_scores")) == 230


def crash_at_chunk_3(url: str, name: str, scorer: Scorer, opts: BatchOptions) -> None:
    """A run of ``name`` into ``<name>_scores`` that dies in chunk 3 (chunks 0-2 committed)."""
    def crash(index, scores):
        if index == 3:
            raise Boom("connection lost in the middle of chunk 3")

    with pytest.raises(Boom):
        run_batch(scorer, SqlSource(url, name, "lead_id"), SqlScoreSink(url, f"{name}_scores"), opts,
                  on_chunk=crash)


def test_crash_mid_run_keeps_whole_chunks_and_the_rerun_resumes(db, model_dir, leads):
    url, name = db
    scorer = Scorer.load(model_dir)
    table = f"{name}_scores"
    opts = BatchOptions(chunk_size=50, now=NOW, progress=False)
    crash_at_chunk_3(url, name, scorer, opts)
    partial = read(url, table)
    assert len(partial) == 150  # chunks 0-2 committed, chunk 3 not at all
    assert read(url, f"{table}_runs")["status"].tolist() == ["failed"]

    resumed = []
    summary = run_batch(scorer, SqlSource(url, name, "lead_id"), SqlScoreSink(url, table), opts,
                        on_chunk=lambda i, s: resumed.append(i))
    assert resumed == [3, 4] and summary.chunks_resumed == 3
    final = read(url, table)
    assert sorted(final["lead_id"]) == sorted(leads["lead_id"]) and final["lead_id"].is_unique
    assert read(url, f"{table}_runs")["status"].tolist() == ["done"]


def test_postgres_connection_killed_mid_run_is_retried(pg_url, model_dir, leads, caplog):
    name = f"leads_{uuid.uuid4().hex[:10]}"
    app = f"leadscore_kill_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_URL)
    leads.to_sql(name, admin, index=False)
    sink = SqlScoreSink(f"{PG_URL}?application_name={app}", f"{name}_scores", backoff=0.05)
    sink.engine.dispose()
    sink.engine = sa.create_engine(sink.engine.url, pool_pre_ping=False)  # make the drop visible

    def kill(index, scores):
        if index == 2:
            with admin.begin() as conn:
                killed = conn.execute(sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :a"),
                    {"a": app}).scalars().all()
            assert killed and all(killed)

    try:
        summary = run_batch(Scorer.load(model_dir), SqlSource(PG_URL, name, "lead_id"), sink,
                            BatchOptions(chunk_size=50, now=NOW, progress=False), on_chunk=kill)
        assert summary.status == "done" and summary.rows_scored == 230
        assert "retrying" in caplog.text
        assert len(read(PG_URL, f"{name}_scores")) == 230
    finally:
        with admin.begin() as conn:
            for table in (name, f"{name}_scores", f"{name}_scores_runs", f"{name}_scores_chunks"):
                conn.execute(sa.text(f'DROP TABLE IF EXISTS "{table}"'))
        admin.dispose()


def test_cli_database_errors_are_one_line(model_dir, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    sa.create_engine(url).connect().close()
    assert main(["score", "--model", str(model_dir), "--input", url, "--query", "no_such_table",
                 "--output", str(tmp_path / "o.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("leadscore score: error:") and "no_such_table" in err and len(err.splitlines()) == 1
    out = str(tmp_path / "o.csv")
    assert main(["score", "--model", str(model_dir), "--input", url, "--output", out]) == 2
    assert "--query" in capsys.readouterr().err
    assert not (tmp_path / "o.csv").exists()


def test_a_model_without_id_column_cannot_write_to_a_database(db, leads, tmp_path, capsys):
    """Row numbers as lead ids would overwrite an earlier file's scores in the same table."""
    url, name = db
    result = fit_table(make_flat_leads(300, seed=4).drop(columns=["lead_id"]), target="converted",
                       candidates=["logistic"])
    model = save_bundle(result.bundle, tmp_path / "no-id")
    assert main(["score", "--model", str(model), "--input", url, "--query", name, "--output", url,
                 "--table", f"{name}_scores", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "has no id column" in err and "Traceback" not in err
    engine = sa.create_engine(url)
    try:
        assert not sa.inspect(engine).has_table(f"{name}_scores")  # nothing written, no run record
    finally:
        engine.dispose()


def test_the_database_password_is_not_printed(pg_url, model_dir, leads, tmp_path, capsys):
    name = f"scores_{uuid.uuid4().hex[:10]}"
    path = tmp_path / "leads.csv"
    leads.head(10).to_csv(path, index=False)
    with_password = pg_url.replace("postgres@", "postgres:s3cret-Pa55@")  # trust auth ignores it
    assert main(["score", "--model", str(model_dir), "--input", str(path), "--output", with_password,
                 "--table", name, "-q"]) == 0
    out = capsys.readouterr()
    assert "s3cret-Pa55" not in out.out + out.err and "postgres:***@" in out.out
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        assert conn.execute(sa.text(f'SELECT count(*) FROM "{name}"')).scalar() == 10
        for table in (name, f"{name}_runs", f"{name}_chunks"):
            conn.execute(sa.text(f'DROP TABLE IF EXISTS "{table}"'))
    engine.dispose()


def test_resuming_against_a_changed_source_starts_over_and_skips_no_lead(db, model_dir, leads):
    """Killed after 3 chunks, 60 low ids deleted from the source, re-run: every remaining lead is
    scored (resuming by chunk number would have skipped the leads that moved into the done chunks)."""
    url, name = db
    scorer = Scorer.load(model_dir)
    table = f"{name}_scores"
    opts = BatchOptions(chunk_size=50, now=NOW, progress=False)
    crash_at_chunk_3(url, name, scorer, opts)
    removed = sorted(leads["lead_id"])[:60]
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f'DELETE FROM "{name}" WHERE lead_id IN :ids').bindparams(
            sa.bindparam("ids", expanding=True)), {"ids": removed})
    engine.dispose()
    summary = run_batch(scorer, SqlSource(url, name, "lead_id"), SqlScoreSink(url, table), opts)
    assert summary.chunks_resumed == 0 and summary.rows_scored == len(leads) - 60
    remaining = set(leads["lead_id"]) - set(removed)
    assert remaining <= set(read(url, table)["lead_id"])
    assert read(url, f"{table}_runs")["status"].tolist().count("done") == 1
