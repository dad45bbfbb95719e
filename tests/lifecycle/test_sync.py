"""Rescoring on change (`leadscore sync`): the high-water mark, write-back, late activities, kill -9."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from crm_support import AS_OF, add_activity, build_crm_model, current_scores, write_crm_db

from leadscore.cli.main import main
from leadscore.core.config import load_params
from leadscore.data.crm import load_crm, open_lead_rows
from leadscore.data.crm_database import CrmDatabase
from leadscore.lifecycle.sync import CrmSync
from leadscore.scoring.crm_leads import as_of_time
from leadscore.scoring.scorer import Scorer
from leadscore.scoring.writeback import ScoreWriteBack


@pytest.fixture(scope="module")
def crm_model(tmp_path_factory):
    return build_crm_model(tmp_path_factory.mktemp("crm-model"))


@pytest.fixture(scope="module")
def open_rows(crm_model):
    rows, _ = open_lead_rows(load_crm(crm_model.raw), load_params(crm_model.params),
                             as_of=pd.Timestamp(AS_OF))
    return rows


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def crm_url(request, tmp_path, crm_model):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'crm.db'}"
        write_crm_db(crm_model, url)
        yield url
        return
    from conftest import fresh_database

    server = request.getfixturevalue("pg_url" if request.param == "postgresql" else "mariadb_url")
    with fresh_database(server) as url:
        write_crm_db(crm_model, url)
        yield url


def _sync(url: str, crm_model, **kwargs) -> CrmSync:
    db = CrmDatabase(url)
    scorer = Scorer.load(registry=crm_model.registry)
    at = as_of_time(AS_OF)
    return CrmSync(db, lambda: scorer, ScoreWriteBack(url, engine=db.engine), load_params(crm_model.params),
                   as_of=lambda: at, **kwargs)


def _young_open_leads(open_rows: pd.DataFrame, n: int) -> list[str]:
    young = open_rows[open_rows["created_at"] > pd.Timestamp(AS_OF) - pd.Timedelta(days=6)]
    assert len(young) >= n, "the demo should have leads younger than the snapshot window"
    return young["lead_id"].astype(str).tolist()[:n]


def test_first_pass_scores_every_open_lead_as_batch_scoring_does(tmp_path, crm_model, open_rows):
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    write_crm_db(crm_model, url)
    assert main(["sync", "--crm", url, "--registry", str(crm_model.registry), "--params",
                 str(crm_model.params), "--as-of", AS_OF, "--no-log"]) == 0
    stored = current_scores(url)
    expected = Scorer.load(registry=crm_model.registry).score_frame(open_rows, reasons=3).set_index("lead_id")
    assert sorted(stored.index) == sorted(expected.index.astype(str))
    joined = stored.merge(expected, left_index=True, right_index=True, suffixes=("", "_batch"))
    np.testing.assert_allclose(joined["probability"], joined["probability_batch"], rtol=0, atol=1e-9)
    assert (joined["score"] == joined["score_batch"]).all() and (joined["tier"] == joined["tier_batch"]).all()
    assert all(json.loads(a) == json.loads(b) for a, b in zip(joined["reasons"], joined["reasons_batch"],
                                                               strict=True))
    assert (stored["model_version"] == crm_model.version).all()


def test_a_new_activity_rescores_that_lead_only(crm_url, crm_model, open_rows):
    sync = _sync(crm_url, crm_model)
    first = sync.run_once()
    assert first.rescored == len(open_rows) and first.mark is not None
    before = current_scores(crm_url)
    lead = _young_open_leads(open_rows, 1)[0]
    at = pd.Timestamp(AS_OF) - pd.Timedelta(hours=2)
    add_activity(crm_url, lead, "quote_request", at)
    add_activity(crm_url, lead, "meeting", at + pd.Timedelta(minutes=30),
                 note="budget approved, decision maker")
    second = sync.run_once()
    assert second.rescored == 1 and second.mark > first.mark
    after = current_scores(crm_url)
    assert after.loc[lead, "probability"] > before.loc[lead, "probability"]
    after, before = after.sort_index(), before.sort_index()
    others = after.index != lead
    pd.testing.assert_series_equal(after.loc[others, "scored_at"], before.loc[others, "scored_at"])
    assert sync.run_once().rescored == 0  # nothing new: the overlap does not rescore the same change
    sync.db.close()


def test_a_late_logged_activity_is_seen(tmp_path, crm_model, open_rows):
    """A call logged now with a timestamp of days ago changes the features: found by when it was
    recorded, never by its own time."""
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    write_crm_db(crm_model, url)
    sync = _sync(url, crm_model)
    sync.run_once()
    lead = _young_open_leads(open_rows, 2)[1]
    created = open_rows.set_index("lead_id").loc[lead, "created_at"]
    add_activity(url, lead, "quote_request", pd.Timestamp(created) + pd.Timedelta(hours=1))
    stats = sync.run_once()
    assert stats.rescored == 1
    # and after a restart (a new process: nothing remembered) the committed mark still holds
    assert _sync(url, crm_model).run_once().rescored <= 1
    sync.db.close()


def test_leads_with_an_outcome_are_counted_and_skipped(tmp_path, crm_model):
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    write_crm_db(crm_model, url)
    stats = _sync(url, crm_model).run_once()
    assert stats.changed == 3000
    assert stats.rescored + sum(stats.skipped.values()) == 3000
    assert stats.skipped.get("closed", 0) > 0 and stats.skipped.get("converted", 0) > 0


def _start_follow(url: str, crm_model, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "leadscore.cli", "sync", "--crm", url,
            "--registry", str(crm_model.registry), "--params", str(crm_model.params), "--as-of", AS_OF,
            "--no-log", "--follow", "--json", "--interval", "0.1", *extra]
    return subprocess.Popen(argv, stdout=log.open("ab"), stderr=subprocess.STDOUT)


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _mark(url: str) -> str | None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("leadscore_sync_state"):
                return None
            return conn.execute(sa.text("SELECT mark FROM leadscore_sync_state")).scalar()
    finally:
        engine.dispose()


@pytest.mark.slow
def test_follow_killed_with_sigkill_misses_no_lead(tmp_path, crm_model, open_rows, pg_url):
    """Activities keep arriving while `sync --follow` runs; it is killed with SIGKILL part-way and
    restarted: every lead that got an activity ends with a score newer than that activity's record."""
    from conftest import fresh_database

    with fresh_database(pg_url) as url:
        write_crm_db(crm_model, url)
        log = tmp_path / "sync.log"
        proc = _start_follow(url, crm_model, log)
        _wait_for(lambda: _mark(url) is not None, 120, "the first pass")
        leads = _young_open_leads(open_rows, 20)
        recorded: dict[str, pd.Timestamp] = {}
        for i, lead in enumerate(leads):
            now = pd.Timestamp.now(tz="UTC").tz_localize(None)
            add_activity(url, lead, "page_view", pd.Timestamp(AS_OF) - pd.Timedelta(hours=1), recorded_at=now)
            recorded[lead] = now
            if i == 9:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
            time.sleep(0.05)
        proc = _start_follow(url, crm_model, log)

        def caught_up() -> bool:
            scores = current_scores(url)
            return all(pd.Timestamp(scores.loc[lead, "scored_at"]).tz_convert("UTC").tz_localize(None)
                       >= recorded[lead] for lead in leads)

        try:
            _wait_for(caught_up, 60, "every changed lead to be rescored")
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0, log.read_text()
        missed = [lead for lead in leads if pd.Timestamp(current_scores(url).loc[lead, "scored_at"])
                  .tz_convert("UTC").tz_localize(None) < recorded[lead]]
        assert missed == []
        assert "finishing the current batch" in log.read_text()


@pytest.mark.slow
def test_sigkill_mid_batch_leaves_no_half_written_lead(tmp_path, crm_model):
    """Write-back with mapped lead columns, killed mid-way through the first pass: every lead's
    lead_scores row and its columns on the lead table agree (both written or neither); a rerun
    completes the pass."""
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    write_crm_db(crm_model, url)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE leads ADD COLUMN score__c INTEGER"))
        conn.execute(sa.text("ALTER TABLE leads ADD COLUMN version__c VARCHAR(64)"))
    mapping = Path(__file__).parents[2] / "docs" / "mappings" / "demo.yaml"
    text = mapping.read_text() + "\n"
    mapped = tmp_path / "mapping.yaml"
    mapped.write_text(text.replace("leads:\n", "leads:\n  write_back: {score: score__c, model_version: "
                                               "version__c}\n", 1))
    argv = [sys.executable, "-m", "leadscore.cli", "sync", "--crm", url, "--crm-map", str(mapped),
            "--registry", str(crm_model.registry), "--params", str(crm_model.params), "--as-of", AS_OF,
            "--no-log", "--batch-size", "20"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def written() -> int:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("lead_scores"):
                return 0
            return int(conn.execute(sa.text("SELECT COUNT(*) FROM lead_scores")).scalar() or 0)

    _wait_for(lambda: written() >= 40, 120, "a few batches")
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT l.lead_id, l.score__c, l.version__c, s.score, s.model_version FROM leads l "
            "LEFT JOIN lead_scores s ON s.lead_id = l.lead_id")).all()
        assert conn.execute(sa.text("SELECT COUNT(*) FROM leadscore_sync_state")).scalar() == 0
    partial = [r for r in rows if r[3] is not None]
    assert 0 < len(partial) < 3000
    assert all((r[1], r[2]) == (r[3], r[4]) for r in rows)  # both written, or neither
    assert os.environ.get("LEADSCORE_SIGNING_KEY_FILE")
    assert main(argv[3:]) == 0  # the rerun, in process
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT l.score__c, s.score FROM leads l JOIN lead_scores s ON s.lead_id = l.lead_id")).all()
        assert conn.execute(sa.text("SELECT COUNT(*) FROM leadscore_sync_state")).scalar() == 1
    assert len(rows) > len(partial) and all(a == b for a, b in rows)
    engine.dispose()


def test_batch_scoring_from_the_crm_database_equals_scoring_from_files(tmp_path, crm_model):
    """`leadscore score --crm URL` reads the open leads of a database: the same rows and scores as
    `--crm DIR` on the same CRM as files."""
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    write_crm_db(crm_model, url)
    common = ["--registry", str(crm_model.registry), "--params", str(crm_model.params), "--as-of", AS_OF,
              "--no-shadow", "-q", "--chunk-size", "700"]
    assert main(["score", "--crm", url, "--output", str(tmp_path / "db.parquet"), *common]) == 0
    assert main(["score", "--crm", str(crm_model.raw), "--output", str(tmp_path / "files.parquet"),
                 *common]) == 0
    from_db, from_files = (pd.read_parquet(tmp_path / name).drop(columns=["scored_at", "run_id"])
                           .sort_values("lead_id") for name in ("db.parquet", "files.parquet"))
    assert len(from_db) > 300
    pd.testing.assert_frame_equal(from_db.reset_index(drop=True), from_files.reset_index(drop=True))


def test_from_newest_skips_the_backlog_and_catches_what_follows(tmp_path, crm_model, open_rows):
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    write_crm_db(crm_model, url)
    sync = _sync(url, crm_model)
    assert sync.start_at_newest() == sync.db.changed_leads().high_water
    assert sync.run_once().rescored <= 1  # only the overlap's newest change, if open
    lead = _young_open_leads(open_rows, 3)[2]
    add_activity(url, lead, "form_submit", pd.Timestamp(AS_OF) - pd.Timedelta(hours=5))
    stats = sync.run_once()
    assert stats.rescored == 1 and lead in current_scores(url).index
    sync.db.close()


@pytest.mark.slow
def test_the_crm_demo_script_shows_a_score_following_an_activity(crm_model):
    """`make crm-demo`'s script: the demo CRM in SQLite, sync --follow, one activity, its new score."""
    script = Path(__file__).parents[2] / "scripts" / "crm_demo.py"
    proc = subprocess.run([sys.executable, str(script), "--model", crm_model.version, "--registry",
                           str(crm_model.registry), "--n-leads", "3000"], capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "$ leadscore sync --crm" in proc.stdout and "open leads scored and written back" in proc.stdout
    seen = re.search(r"rescored ([0-9.]+) s after the activity was committed: score (\d+) -> (\d+)",
                     proc.stdout)
    assert seen is not None, proc.stdout
    assert float(seen.group(1)) < 30 and int(seen.group(3)) >= int(seen.group(2))
