"""`leadscore monitor performance|drift` on a store with logged scores, a registry and outcomes."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from conftest import make_flat_leads
from sklearn.metrics import roc_auc_score

from leadscore.artifacts.bundle import save_bundle
from leadscore.artifacts.paths import LOG_TABLE
from leadscore.artifacts.registry import Registry
from leadscore.cli.main import main
from leadscore.data.schema import prepare_features
from leadscore.monitoring.outcomes import OutcomeStore
from leadscore.monitoring.predlog import open_database
from leadscore.training.fit import fit_table

START = datetime(2025, 3, 3, tzinfo=UTC)  # a Monday


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A registry with one model, and a store holding 4 weeks of logged scores (the last week's budgets
    ten times larger) and the outcomes of the first two weeks' leads."""
    root = tmp_path_factory.mktemp("monitor")
    train = make_flat_leads(1500, seed=0)
    result = fit_table(train, target="converted", id_column="lead_id", candidates=["logistic"])
    bundle_dir = save_bundle(result.bundle, root / "bundle")
    registry = Registry(root / "registry")
    version = registry.register(bundle_dir, activate=True)
    model = registry.load(version)
    new = make_flat_leads(1200, seed=1).drop(columns="converted")
    week = np.arange(len(new)) // 300
    money = new["budget"].str.replace(r"[$,]", "", regex=True).replace("N/A", np.nan).astype(float)
    new.loc[week == 3, "budget"] = (money[week == 3] * 10).map(
        lambda v: "N/A" if np.isnan(v) else f"${v:,.0f}")
    prob = model.model.predict_proba(prepare_features(new, model.schema))[:, 1]
    truth = (np.random.default_rng(5).random(len(new)) < prob).astype(bool)
    db = f"sqlite:///{root / 'store.db'}"
    engine, log, outcomes = open_database(db, LOG_TABLE, "outcomes")
    scored_at = [START + timedelta(days=7 * int(w), hours=i % 100) for i, w in enumerate(week)]
    inputs = new.drop(columns=["lead_id"]).to_dict("records")
    with engine.begin() as conn:
        conn.execute(sa.insert(log), [
            {"request_id": f"r{i}", "lead_id": new["lead_id"][i], "model_version": version,
             "probability": float(prob[i]), "score": int(round(100 * prob[i])), "tier": "LOW_PRIORITY",
             "inputs": inputs[i], "outputs": {}, "scored_at": scored_at[i], "entry": f"e{i}"}
            for i in range(len(new))])
    early = week < 2
    OutcomeStore(engine, outcomes).record_many(
        [{"lead_id": new["lead_id"][i], "converted": bool(truth[i]),
          "converted_at": scored_at[i] + timedelta(days=3) if truth[i] else None,
          "recorded_at": scored_at[i] + timedelta(days=3)}
         for i in np.flatnonzero(early)])
    return {"root": root, "db": db, "registry": root / "registry", "prob": prob, "truth": truth,
            "week": week, "version": version}


def test_monitor_performance_counts_only_matured_labels(setup, capsys):
    argv = ["monitor", "performance", "--db", setup["db"], "--registry", str(setup["registry"]),
            "--by", "week", "--window-days", "90", "--now", "2025-04-10", "--json"]
    assert main(argv) == 0
    rows = {r["period"]: r for r in json.loads(capsys.readouterr().out)["rows"]}
    assert set(rows) == {"2025-03-03", "2025-03-10", "2025-03-17", "2025-03-24"}
    first = rows["2025-03-03"]
    mask = setup["week"] == 0
    assert first["labelled"] == 300 and first["open"] == 0
    expected = roc_auc_score(setup["truth"][mask], setup["prob"][mask])
    assert first["roc_auc"] == pytest.approx(expected, abs=1e-6)
    later = rows["2025-03-24"]  # no outcomes yet and the window is open: nothing counted as a negative
    assert later["labelled"] == 0 and later["open"] == 300 and later.get("roc_auc") is None
    assert main(argv[:-1]) == 0
    table = capsys.readouterr().out
    assert "open leads are never counted as non-converters" in table and "2025-03-24" in table


def test_monitor_drift_flags_the_shifted_week_and_keeps_the_others_quiet(setup, capsys):
    argv = ["monitor", "drift", "--db", setup["db"], "--registry", str(setup["registry"]), "--by", "week"]
    assert main([*argv, "--json"]) == 0
    periods = {p["period"]: p for p in json.loads(capsys.readouterr().out)["periods"]}
    # the features: quiet for three weeks, then the budgets (ten times larger) alert; the score's own
    # check is left out here: 300 leads a week and a 1,500-row training set make its PSI noisy
    feature_states = [sorted({f["state"] for f in periods[p]["features"]}) for p in sorted(periods)]
    assert feature_states == [["ok"], ["ok"], ["ok"], ["alert", "ok"]]
    assert periods["2025-03-24"]["state"] == "alert"
    budget = next(f for f in periods["2025-03-24"]["features"] if f["feature"] == "budget")
    assert budget["state"] == "alert" and budget["ks"] > 0.5
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert re.search(r"2025-03-24\s+300 leads\s+ALERT", text) and "budget" in text


def test_monitor_drift_on_a_file_of_leads_and_clear_errors(setup, tmp_path, capsys):
    leads = make_flat_leads(400, seed=3).drop(columns="converted").assign(
        created_at=pd.date_range("2025-05-01", periods=400, freq="h", tz="UTC"))
    leads.to_parquet(tmp_path / "leads.parquet")
    assert main(["monitor", "drift", "--input", str(tmp_path / "leads.parquet"), "--registry",
                 str(setup["registry"]), "--json"]) == 0
    periods = json.loads(capsys.readouterr().out)["periods"]
    assert [p["period"] for p in periods] == ["2025-05-01"] and periods[0]["n"] == 400
    assert main(["monitor", "drift", "--input", str(tmp_path / "leads.parquet"), "--registry",
                 str(tmp_path / "empty")]) == 2
    assert "has no active model" in capsys.readouterr().err


def test_monitor_performance_reads_a_batch_scores_file_the_same_way(setup, tmp_path, capsys):
    engine, log, _ = open_database(setup["db"], LOG_TABLE, "outcomes")
    with engine.connect() as conn:
        logged = pd.read_sql(sa.select(log.c.lead_id, log.c.model_version, log.c.probability, log.c.score,
                                       log.c.tier, log.c.scored_at), conn)
    logged.to_parquet(tmp_path / "scores.parquet")  # the columns `leadscore score` writes
    common = ["--db", setup["db"], "--registry", str(setup["registry"]), "--by", "week",
              "--window-days", "90", "--now", "2025-04-10", "--json"]
    assert main(["monitor", "performance", *common]) == 0
    from_log = json.loads(capsys.readouterr().out)["rows"]
    assert main(["monitor", "performance", "--scores", str(tmp_path / "scores.parquet"), *common]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == from_log


def test_monitor_estimate_gives_intervals_for_open_weeks_and_a_backtest(setup, capsys):
    common = ["--db", setup["db"], "--registry", str(setup["registry"]), "--by", "week",
              "--window-days", "90", "--simulations", "200"]
    assert main(["monitor", "estimate", *common, "--now", "2025-04-10", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    rows = {r["period"]: r for r in doc["rows"]}
    assert doc["delay_adjusted"] is False  # no window has closed by 2025-04-10
    late = rows["2025-03-24"]
    mask = setup["week"] == 3
    assert late["open"] == 300
    assert late["est_conversion_rate"] == pytest.approx(setup["prob"][mask].mean(), abs=0.01)
    assert late["est_conversion_rate_low"] < late["est_conversion_rate"] < late["est_conversion_rate_high"]
    assert late["est_roc_auc_low"] < late["est_roc_auc"] < late["est_roc_auc_high"]
    # once every window has closed, the two weeks with outcomes are matured: the backtest compares them
    assert main(["monitor", "estimate", *common, "--now", "2025-08-01", "--backtest", "--json"]) == 0
    back = json.loads(capsys.readouterr().out)
    assert [r["period"] for r in back["rows"]] == ["2025-03-03", "2025-03-10", "2025-03-17", "2025-03-24"]
    first = back["rows"][0]
    assert first["real_conversion_rate"] == pytest.approx(setup["truth"][setup["week"] == 0].mean())
    assert first["conversion_rate_within"] == (
        first["conversion_rate_low"] <= first["real_conversion_rate"] <= first["conversion_rate_high"])
    assert main(["monitor", "estimate", *common, "--now", "2025-08-01", "--backtest"]) == 0
    assert "within the interval: conversion_rate" in capsys.readouterr().out


def test_monitor_performance_reads_a_batch_scores_table_in_the_store(setup, tmp_path, capsys):
    engine, log, _ = open_database(setup["db"], LOG_TABLE, "outcomes")
    with engine.connect() as conn:
        logged = pd.read_sql(sa.select(log.c.lead_id, log.c.model_version, log.c.probability, log.c.score,
                                       log.c.tier, log.c.scored_at), conn)
    db = f"sqlite:///{tmp_path / 'batch.db'}"
    batch_engine, _, outcomes = open_database(db, LOG_TABLE, "outcomes")
    logged.to_sql("lead_scores", batch_engine, index=False)
    known = OutcomeStore(engine, open_database(setup["db"], LOG_TABLE, "outcomes")[2]).frame()
    OutcomeStore(batch_engine, outcomes).record_many(
        known.astype(object).where(known.notna(), None).to_dict("records"))
    common = ["--registry", str(setup["registry"]), "--by", "week", "--window-days", "90",
              "--now", "2025-04-10", "--json"]
    assert main(["monitor", "performance", "--db", setup["db"], *common]) == 0
    from_log = json.loads(capsys.readouterr().out)["rows"]
    assert main(["monitor", "performance", "--db", db, "--scores-table", "lead_scores", *common]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == from_log
    assert main(["monitor", "performance", "--db", db, "--scores-table", "nope", *common]) == 2
    assert "no table 'nope'" in capsys.readouterr().err


def test_monitor_replay_logs_each_lead_once_at_its_snapshot(setup, tmp_path, capsys):
    leads = make_flat_leads(300, seed=4).drop(columns="converted")
    created = pd.date_range("2025-05-01", periods=300, freq="5h", tz="UTC")
    snapshots = leads.assign(created_at=created, snapshot_at=created + pd.Timedelta(days=7))
    cut = snapshots.index[100:105]  # snapshots cut short by the end of the data: scored later, not now
    snapshots.loc[cut, "snapshot_at"] = snapshots.loc[cut, "created_at"] + pd.Timedelta(days=2)
    snapshots.to_parquet(tmp_path / "snapshots.parquet")
    converted = np.arange(300) % 4 == 0
    pd.DataFrame({"lead_id": leads["lead_id"], "converted": converted.astype("int8"),
                  "converted_at": (created + pd.Timedelta(days=20)).where(converted)}) \
        .to_parquet(tmp_path / "outcomes.parquet")
    db = f"sqlite:///{tmp_path / 'replay.db'}"
    argv = ["monitor", "replay", "--snapshots", str(tmp_path / "snapshots.parquet"), "--outcomes",
            str(tmp_path / "outcomes.parquet"), "--db", db, "--registry", str(setup["registry"]), "-q"]
    assert main(argv) == 2  # a model fitted without a time column has no training window
    assert "give the replay a start date" in capsys.readouterr().err
    end = "2025-06-20"
    for _ in range(2):  # a second run adds nothing
        assert main([*argv, "--start", "2025-05-01", "--end", end, "--json"]) == 0
        doc = json.loads(capsys.readouterr().out)
    kept = snapshots.drop(index=cut)
    expected = kept[kept["snapshot_at"] < pd.Timestamp(end, tz="UTC")]
    assert len(expected) == len(snapshots[snapshots["snapshot_at"] < pd.Timestamp(end, tz="UTC")]) - 5
    assert doc["scored"] == len(expected)
    engine, log, outcomes = open_database(db, LOG_TABLE, "outcomes")
    with engine.connect() as conn:
        stored = pd.read_sql(sa.select(log.c.lead_id, log.c.scored_at, log.c.request_id), conn)
    assert len(stored) == len(expected) and stored["lead_id"].is_unique
    at = pd.to_datetime(stored.set_index("lead_id")["scored_at"], utc=True)
    pd.testing.assert_series_equal(at.sort_index(), expected.set_index("lead_id")["snapshot_at"].sort_index(),
                                   check_names=False, check_freq=False, check_index_type=False)
    recorded = OutcomeStore(engine, outcomes).frame()
    replayed = np.isin(leads["lead_id"], expected["lead_id"])  # only the scored leads' outcomes
    conversions = (created + pd.Timedelta(days=20))[converted & replayed]
    assert len(recorded) == int((conversions < pd.Timestamp(end, tz="UTC")).sum()) > 0
    assert (recorded["recorded_at"] == recorded["converted_at"]).all()


def test_monitor_check_stores_exports_and_posts_the_alert(setup, tmp_path, capsys):
    from prometheus_client.parser import text_string_to_metric_families
    from webhook_support import Receiver

    from leadscore.monitoring.exposition import load_states

    receiver = Receiver([503])
    try:
        argv = ["monitor", "check", "--db", setup["db"], "--registry", str(setup["registry"]),
                "--now", "2025-04-10", "--window-days", "90", "--simulations", "100",
                "--prometheus-textfile", str(tmp_path / "m.prom"), "--webhook", receiver.url]
        assert main([*argv, "--json"]) == 0
        doc = json.loads(capsys.readouterr().out)
        assert doc["state"] == "alert" and doc["webhook"]["delivered"] and doc["webhook"]["attempts"] == 2
        budget = next(s for s in doc["states"] if s["subject"] == "budget")
        assert (budget["check"], budget["period"], budget["state"]) == ("drift", "2025-03-24", "alert")
        assert "`budget`" in receiver.bodies[-1]["text"]
        engine, _, _ = open_database(setup["db"], LOG_TABLE, "outcomes")
        stored, _ = load_states(engine)
        assert {"budget", "score"} <= {s.subject for s in stored if s.state == "alert"}
        # the latest week with labels (2025-03-10) is judged against the held-out ROC-AUC
        perf = next(s for s in stored if s.check == "performance")
        mask = setup["week"] == 1
        assert perf.period == "2025-03-10"
        assert perf.value == pytest.approx(roc_auc_score(setup["truth"][mask], setup["prob"][mask]), abs=1e-6)
        text = (tmp_path / "m.prom").read_text()
        gauges = {(s.name, s.labels.get("subject")): s.value
                  for f in text_string_to_metric_families(text) for s in f.samples}
        assert gauges[("leadscore_monitor_state", "budget")] == 2
        assert main([*argv, "--fail-on", "alert"]) == 3
        assert "ALERT drift" in capsys.readouterr().out
    finally:
        receiver.close()
    # a webhook that cannot be reached: one warning line, the states still stored, status 0
    assert main([*argv[:-2], "--webhook", receiver.url, "--webhook-attempts", "2"]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("warning: webhook not delivered after 2 attempt(s)")
    assert len(captured.err.strip().splitlines()) == 1
