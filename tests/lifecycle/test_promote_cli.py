"""`leadscore models challenger|promote|history`: the gate on a real registry, with evidence from a
labelled table and from shadow scores in the store."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from conftest import make_flat_leads

from leadscore.artifacts.bundle import save_bundle
from leadscore.artifacts.paths import LOG_TABLE
from leadscore.artifacts.registry import Registry
from leadscore.cli.main import main
from leadscore.data.schema import prepare_features
from leadscore.monitoring.outcomes import OutcomeStore
from leadscore.monitoring.predlog import open_database, read_log
from leadscore.training.fit import fit_table


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """A good model and a weak one (trained with the informative `source` column shuffled)."""
    root = tmp_path_factory.mktemp("gate")
    train = make_flat_leads(3000, seed=0)
    good = fit_table(train, target="converted", id_column="lead_id", candidates=["logistic"])
    shuffled = train.assign(source=np.random.default_rng(1).permutation(train["source"].to_numpy()))
    weak = fit_table(shuffled, target="converted", id_column="lead_id", candidates=["logistic"])
    return save_bundle(good.bundle, root / "good"), save_bundle(weak.bundle, root / "weak")


def _registry(tmp_path, bundles):
    registry = Registry(tmp_path / "registry")
    weak = registry.register(bundles[1], activate=True, now=datetime(2025, 1, 1, tzinfo=UTC))
    good = registry.register(bundles[0], now=datetime(2025, 1, 2, tzinfo=UTC))
    return registry, weak, good


def test_promote_on_a_labelled_table_then_reject_and_force(tmp_path, bundles, capsys):
    registry, weak, good = _registry(tmp_path, bundles)
    fresh = make_flat_leads(4000, seed=9)
    fresh.to_parquet(tmp_path / "fresh.parquet")
    common = ["--registry", str(registry.root), "--data", str(tmp_path / "fresh.parquet"),
              "--label", "converted"]
    assert main(["models", "challenger", good, "--registry", str(registry.root)]) == 0
    capsys.readouterr()
    assert main(["models", "promote", good, *common, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["decision"], doc["action"], doc["champion"]) == ("promote", "promoted", weak)
    assert doc["figures"]["leads"] == 4000 and doc["figures"]["p_better"] < 0.05
    assert registry.active_version() == good and registry.challenger_version() is None
    # the weak one, now challenging the good one, is rejected and unmarked
    registry.set_challenger(weak)
    assert main(["models", "promote", weak, *common]) == 3
    out = capsys.readouterr().out
    assert f"{weak} vs {good}: REJECT -> rejected" in out and "DeLong" in out
    assert registry.active_version() == good and registry.challenger_version() is None
    # too few leads: kept as challenger, no test
    fresh.head(100).to_parquet(tmp_path / "few.parquet")
    few = [*common[:2], "--data", str(tmp_path / "few.parquet"), "--label", "converted"]
    assert main(["models", "promote", weak, *few]) == 3
    assert "KEEP -> kept as challenger" in capsys.readouterr().out and registry.challenger_version() == weak
    # an admin forces it; the history says so
    assert main(["models", "promote", weak, *common, "--force", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["action"] == "promoted (forced)"
    assert registry.active_version() == weak
    gates = [e for e in registry.events() if e["event"] == "gate"]
    assert [(g["decision"], g["forced"]) for g in gates] == [("promote", False), ("reject", False),
                                                             ("keep", False), ("reject", True)]
    assert main(["models", "history", "--registry", str(registry.root), "--json"]) == 0
    events = json.loads(capsys.readouterr().out)["events"]
    assert [e["event"] for e in events].count("gate") == 4
    assert main(["models", "history", "--registry", str(registry.root), "--limit", "3"]) == 0
    text = capsys.readouterr().out
    assert "gate" in text and "promoted (forced)" in text and len(text.strip().splitlines()) >= 3


def test_promote_from_shadow_scores_in_the_store(tmp_path, bundles, capsys):
    registry, weak, good = _registry(tmp_path, bundles)
    registry.set_challenger(good)
    leads = make_flat_leads(3000, seed=21)
    truth = leads.pop("converted").str.strip().str.lower().eq("yes").to_numpy()
    db = f"sqlite:///{tmp_path / 'store.db'}"
    engine, log, outcomes = open_database(db, LOG_TABLE, "outcomes")
    start = datetime(2025, 3, 3, tzinfo=UTC)
    rows = []
    for version in (weak, good):   # the champion decides, the challenger is scored in its shadow
        model = registry.load(version)
        prob = model.model.predict_proba(prepare_features(leads, model.schema))[:, 1]
        rows += [{"request_id": f"r{i}", "lead_id": leads["lead_id"][i], "model_version": version,
                  "probability": float(prob[i]), "score": int(100 * prob[i]), "tier": "LOW", "inputs": {},
                  "outputs": {}, "scored_at": start + timedelta(hours=i), "entry": f"{version}-{i}"}
                 for i in range(len(leads))]
    with engine.begin() as conn:
        conn.execute(sa.insert(log), rows)
    OutcomeStore(engine, outcomes).record_many(
        [{"lead_id": leads["lead_id"][i], "converted": bool(truth[i]),
          "converted_at": start + timedelta(hours=i, days=5) if truth[i] else None,
          "recorded_at": start + timedelta(hours=i, days=5)} for i in range(len(leads))])
    common = ["--registry", str(registry.root), "--db", db, "--json"]
    # before the outcomes arrived nothing is matured: keep
    assert main(["models", "promote", good, *common, "--now", "2025-03-04"]) == 3
    doc = json.loads(capsys.readouterr().out)
    assert doc["decision"] == "keep" and doc["figures"]["leads"] < 300
    status = main(["models", "promote", good, *common, "--now", "2025-12-31"])
    doc = json.loads(capsys.readouterr().out)
    assert status == 0, (doc["reasons"], doc["evidence"], doc["figures"])
    assert doc["decision"] == "promote" and doc["figures"]["leads"] == 3000
    assert doc["evidence"].startswith("shadow scores: 3,000 leads scored by both")


def test_batch_scoring_shadow_scores_the_challenger_and_feeds_the_gate(tmp_path, bundles, capsys):
    """`leadscore score` with the active version and a challenger in the registry: the output holds the
    champion's scores only, the store's prediction log both versions' scores of every lead (the
    challenger's marked shadow); with the outcomes, `models promote` reads that evidence by default."""
    registry, weak, good = _registry(tmp_path, bundles)
    registry.set_challenger(good)
    leads = make_flat_leads(3000, seed=22)
    truth = leads.pop("converted").str.strip().str.lower().eq("yes").to_numpy()
    leads.to_csv(tmp_path / "leads.csv", index=False)
    db = f"sqlite:///{tmp_path / 'store.db'}"
    common = ["--registry", str(registry.root), "--db", db]
    assert main(["score", "--input", str(tmp_path / "leads.csv"), "--output", str(tmp_path / "out.csv"),
                 "--chunk-size", "1000", "-q", *common]) == 0
    assert f"challenger {good} scored the same 3,000 leads (shadow)" in capsys.readouterr().out
    out = pd.read_csv(tmp_path / "out.csv")
    assert len(out) == 3000 and set(out["model_version"].astype(str)) == {weak}
    assert not {"shadow", "arm"} & set(out.columns)
    engine, log, outcomes = open_database(db, LOG_TABLE, "outcomes")
    logged = read_log(engine, log)
    assert logged.groupby("model_version")["lead_id"].nunique().to_dict() == {weak: 3000, good: 3000}
    with engine.connect() as conn:
        shadow = conn.execute(sa.select(log.c.model_version, log.c.outputs)).all()
    assert {v for v, o in shadow if o.get("shadow")} == {good}
    champion_rows = logged[logged["model_version"] == weak].set_index("lead_id")
    np.testing.assert_allclose(champion_rows.loc[out["lead_id"], "probability"], out["probability"],
                               atol=1e-6)
    # --no-shadow: the champion alone, nothing more logged
    assert main(["score", "--input", str(tmp_path / "leads.csv"), "--output", str(tmp_path / "out2.csv"),
                 "-q", "--no-shadow", *common]) == 0
    assert "(shadow)" not in capsys.readouterr().out and len(read_log(engine, log)) == 6000

    scored_at = pd.Timestamp(logged["scored_at"].min())
    OutcomeStore(engine, outcomes).record_many(
        [{"lead_id": lead, "converted": bool(hit),
          "converted_at": (scored_at + timedelta(days=3)).to_pydatetime() if hit else None,
          "recorded_at": (scored_at + timedelta(days=3)).to_pydatetime()}
         for lead, hit in zip(leads["lead_id"], truth, strict=True)])
    later = (scored_at + timedelta(days=200)).strftime("%Y-%m-%d")
    status = main(["models", "promote", good, *common, "--now", later, "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert doc["evidence"].startswith("shadow scores: 3,000 leads scored by both"), doc
    assert status == 0 and doc["decision"] == "promote" and registry.active_version() == good


def test_the_dask_engine_says_it_did_not_shadow_score(tmp_path, bundles, capsys):
    """The dask engine logs no scores: with a challenger marked it says so instead of skipping silently."""
    registry, weak, good = _registry(tmp_path, bundles)
    registry.set_challenger(good)
    make_flat_leads(200, seed=23).drop(columns="converted").to_parquet(tmp_path / "leads.parquet")
    db = f"sqlite:///{tmp_path / 'store.db'}"
    assert main(["score", "--engine", "dask", "--input", str(tmp_path / "leads.parquet"), "--output",
                 str(tmp_path / "out"), "--registry", str(registry.root), "--db", db, "-q"]) == 0
    err = capsys.readouterr().err
    assert f"challenger {good} was not shadow-scored" in err and "--engine pandas" in err
    engine, log, _ = open_database(db, LOG_TABLE, "outcomes")
    assert read_log(engine, log).empty
