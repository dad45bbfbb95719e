"""Experiments in a real store (SQLite and PostgreSQL), the `leadscore experiments` commands, and batch
scoring inside an experiment."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, make_flat_leads

from leadscore.artifacts.bundle import save_bundle
from leadscore.artifacts.paths import LOG_TABLE
from leadscore.artifacts.registry import Registry
from leadscore.cli.main import main
from leadscore.core.config import load_params
from leadscore.core.exceptions import ConfigError, ExperimentNotFoundError, ExperimentStateError
from leadscore.experiments.arms import ArmScorers, rules_points
from leadscore.experiments.assignment import arm_of
from leadscore.experiments.results import experiment_results
from leadscore.experiments.store import ExperimentStore
from leadscore.monitoring.outcomes import OutcomeStore
from leadscore.monitoring.predlog import open_database
from leadscore.scoring.scorer import Scorer
from leadscore.training.fit import fit_table

FLAT_RULES = [{"feature": "source", "op": "in", "value": ["referral"], "points": 30, "label": "Referral"},
              {"feature": "budget", "op": ">=", "value": 8000, "points": 20, "label": "Budget 8k+"}]
SETTINGS = {"window_days": 30.0, "min_days": 14.0, "mde": 0.05, "alpha": 0.05}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A registry with two versions fitted on the same flat leads, and params.yaml with flat rules."""
    root = tmp_path_factory.mktemp("experiments")
    train = make_flat_leads(600, seed=3)
    first = fit_table(train, target="converted", id_column="lead_id", candidates=["logistic"])
    second = fit_table(train, target="converted", id_column="lead_id", candidates=["lightgbm"])
    registry = Registry(root / "registry")
    v1 = registry.register(save_bundle(first.bundle, root / "b1"), activate=True,
                           now=datetime(2025, 1, 1, tzinfo=UTC))
    v2 = registry.register(save_bundle(second.bundle, root / "b2"), now=datetime(2025, 1, 2, tzinfo=UTC))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["rules"] = FLAT_RULES
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return {"root": root, "registry": registry, "v1": v1, "v2": v2}


def _store(url: str) -> ExperimentStore:
    engine, _, _ = open_database(url, LOG_TABLE, "outcomes")
    return ExperimentStore(engine)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_store_create_assign_stop(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    store = _store(url)
    name = f"exp-{uuid.uuid4().hex[:8]}"
    created = store.create(name, control="rules", treatment="20250101000000", split=0.3, rules=FLAT_RULES,
                           **SETTINGS)
    assert store.get(name) == created and created.status == "running" and created.rules == FLAT_RULES
    assert name in [e.name for e in store.list_experiments()]
    with pytest.raises(ExperimentStateError, match="already exists"):
        store.create(name, control="rules", treatment="v", split=0.5, rules=FLAT_RULES, **SETTINGS)

    first = store.assign(created, "L1", now=datetime(2025, 3, 1, tzinfo=UTC),
                         scores={"treatment_probability": 0.2, "treatment_score": 20, "covariate": 0.2,
                                 "control_score": 30, "control_probability": float("nan")})
    again = store.assign(created, "L1", now=datetime(2025, 3, 9, tzinfo=UTC))
    assert again == first  # sticky: the first arm, time and scores stay
    assert first["arm"] == arm_of(created.salt, "L1", 0.3)
    assert first["control_probability"] is None and first["treatment_score"] == 20
    rows = store.record(created, [{"lead_id": f"L{i}"} for i in range(200)])
    assert len(rows) == 200 and rows[1] == first
    counts = store.counts(name)
    assert sum(counts.values()) == 200
    assert counts["treatment"] == sum(arm_of(created.salt, f"L{i}", 0.3) == "treatment" for i in range(200))
    frame = store.exposure_frame(name)
    assert len(frame) == 200 and str(frame["assigned_at"].dt.tz) == "UTC"

    stopped = store.stop(name, "enough")
    assert stopped.status == "stopped" and stopped.stop_reason == "enough"
    with pytest.raises(ExperimentStateError, match="is stopped"):
        store.running(name)
    with pytest.raises(ExperimentStateError, match="already stopped"):
        store.stop(name)
    with pytest.raises(ExperimentNotFoundError, match="no experiment 'nope'"):
        store.get("nope")


@pytest.mark.parametrize("kwargs, message", [
    ({"control": "v1", "treatment": "v1"}, "both"),
    ({"control": "rules", "treatment": "rules"}, "treatment: expected a model version"),
    ({"control": "rules", "treatment": "v1", "rules": []}, "point system is empty"),
    ({"split": 1.0}, "split"), ({"mde": 0}, "mde"), ({"window_days": -1}, "window_days"),
])
def test_bad_settings_are_config_errors(kwargs: dict, message: str, tmp_path: Path) -> None:
    store = _store(f"sqlite:///{tmp_path / 'store.db'}")
    settings = {"control": "rules", "treatment": "v1", "split": 0.5, "rules": FLAT_RULES, **SETTINGS,
                **kwargs}
    with pytest.raises(ConfigError, match=message):
        store.create("bad", **settings)
    with pytest.raises(ConfigError, match="experiment name"):
        store.create("no spaces", control="rules", treatment="v1", split=0.5, rules=FLAT_RULES, **SETTINGS)


def test_arm_scores_are_each_arms_own(project: dict, tmp_path: Path) -> None:
    registry: Registry = project["registry"]
    store = _store(f"sqlite:///{tmp_path / 'store.db'}")
    experiment = store.create("arms", control="rules", treatment=project["v2"], split=0.5, rules=FLAT_RULES,
                              **SETTINGS)
    leads = make_flat_leads(50, seed=9).drop(columns="converted")
    scorers = ArmScorers.load(experiment, lambda v: Scorer(registry.load(v), v))
    scored = scorers.score(leads)
    treatment = Scorer(registry.load(project["v2"]), project["v2"]).score_frame(leads, reasons=0)
    np.testing.assert_allclose(scored["treatment_probability"], treatment["probability"])
    np.testing.assert_allclose(scored["covariate"], treatment["probability"])
    points = rules_points(FLAT_RULES, scorers.treatment.features(leads))
    by_hand = 30 * leads["source"].str.strip().str.lower().eq("referral").to_numpy()
    assert (points >= by_hand).all() and set(np.unique(points)) <= {0, 20, 30, 50}
    assert scored["control_score"].tolist() == np.clip(points, 0, 100).astype(int).tolist()


def _cli(project: dict, db: str, *args: str) -> int:
    return main(["experiments", *args, "--db", db, "--registry", str(project["root"] / "registry")])


def test_cli_lifecycle_and_batch_scoring(project: dict, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite:///{tmp_path / 'store.db'}"
    params = str(project["root"] / "params.yaml")
    assert _cli(project, db, "create", "ml-vs-rules", "--treatment", project["v2"], "--params", params,
                "--mde", "0.05", "--json") == 0
    created = json.loads(capsys.readouterr().out)
    assert created["control"] == "rules" and created["split"] == 0.5 and created["mde"] == 0.05
    assert created["window_days"] == load_params(params).snapshot.label_window_days

    assert _cli(project, db, "assign", "ml-vs-rules", "A00007", "--json") == 0
    assigned = json.loads(capsys.readouterr().out)
    assert assigned["arm"] == arm_of(created["salt"], "A00007", 0.5)

    leads = make_flat_leads(120, seed=11).drop(columns="converted")
    leads.to_csv(tmp_path / "leads.csv", index=False)
    out = tmp_path / "scored.csv"
    assert main(["score", "--input", str(tmp_path / "leads.csv"), "--output", str(out), "--model",
                 project["v1"], "--registry", str(project["root"] / "registry"), "--experiment",
                 "ml-vs-rules", "--db", db, "-q"]) == 0
    capsys.readouterr()
    scored = pd.read_csv(out)
    assert len(scored) == 120 and (scored["experiment"] == "ml-vs-rules").all()
    arms = [arm_of(created["salt"], lead, 0.5) for lead in scored["lead_id"]]
    assert scored["arm"].tolist() == arms
    treatment = Scorer(project["registry"].load(project["v2"]), project["v2"]).score_frame(leads, reasons=0)
    treated = scored["arm"].eq("treatment").to_numpy()
    assert scored["arm_score"].to_numpy()[treated].tolist() == treatment["score"].to_numpy()[treated].tolist()
    assert scored.loc[~treated, "arm_probability"].isna().all()  # the rules arm has points, no probability
    store = _store(db)
    exposures = store.exposure_frame("ml-vs-rules").set_index("lead_id")
    assert len(exposures) == 120  # A00007, assigned before, is among the scored leads: recorded once
    assert exposures.loc["A00007", "arm"] == assigned["arm"]
    assert exposures.loc["A00007", "assigned_at"] == pd.Timestamp(assigned["assigned_at"])
    assert pd.isna(exposures.loc["A00007", "treatment_score"])  # the first exposure (no scores) stays
    assert exposures["treatment_score"].notna().sum() == 119

    assert _cli(project, db, "list", "--json") == 0
    listed = json.loads(capsys.readouterr().out)["experiments"]
    assert listed[0]["assigned"] == {"control": int((~treated).sum()), "treatment": int(treated.sum())}
    assert _cli(project, db, "stop", "ml-vs-rules", "--reason", "test over") == 0
    capsys.readouterr()
    assert _cli(project, db, "assign", "ml-vs-rules", "A00008") == 2
    assert "is stopped" in capsys.readouterr().err
    assert _cli(project, db, "show", "missing") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no experiment 'missing'" in err


def test_results_count_only_matured_leads(project: dict, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Conversions within the window after assignment, only for leads whose window has closed."""
    db = f"sqlite:///{tmp_path / 'store.db'}"
    store = _store(db)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    experiment = store.create("matured", control=project["v1"], treatment=project["v2"], split=0.5,
                              now=start, **SETTINGS)
    rng = np.random.default_rng(5)
    leads = [{"lead_id": f"M{i:04d}", "assigned_at": start + timedelta(hours=int(h)),
              "covariate": float(p), "treatment_probability": float(p)}
             for i, (h, p) in enumerate(zip(rng.integers(0, 24 * 60, 2000), rng.uniform(0.05, 0.4, 2000),
                                            strict=True))]
    rows = store.record(experiment, leads)
    engine, _, outcomes_table = open_database(db, LOG_TABLE, "outcomes")
    outcomes = OutcomeStore(engine, outcomes_table)
    converted_at = {}
    for row, lead in zip(rows, leads, strict=True):
        rate = lead["covariate"] + (0.08 if row["arm"] == "treatment" else 0.0)
        if rng.random() < rate:
            converted_at[row["lead_id"]] = row["assigned_at"] + timedelta(days=float(rng.uniform(1, 45)))
    outcomes.record_many([{"lead_id": k, "converted": True, "converted_at": v}
                          for k, v in converted_at.items()])
    now = pd.Timestamp("2025-03-01", tz="UTC")
    found = experiment_results(experiment, store.exposure_frame("matured"), outcomes.frame(),
                               load_params(project["root"] / "params.yaml").experiments, now=now)
    # by hand: matured = assigned at least 30 days before now; converted = within 30 days and by now
    frame = pd.DataFrame(rows)
    frame["assigned_at"] = pd.to_datetime(frame["assigned_at"], utc=True)
    matured = frame[frame["assigned_at"] + pd.Timedelta(days=30) <= now]
    hits = [lead in converted_at and converted_at[lead] <= (t + timedelta(days=30)).to_pydatetime()
            for lead, t in zip(matured["lead_id"], matured["assigned_at"], strict=True)]
    matured = matured.assign(converted=hits)
    doc = found.to_dict()
    for arm in doc["arms"]:
        part = matured[matured["arm"] == arm["arm"]]
        assert (arm["n"], arm["conversions"]) == (len(part), int(part["converted"].sum()))
    assert sum(doc["pending"].values()) == len(frame) - len(matured) > 0
    assert json.dumps(doc, allow_nan=False)

    assert _cli(project, db, "results", "matured", "--now", "2025-03-01", "--json",
                "--params", str(project["root"] / "params.yaml")) == 0
    cli = json.loads(capsys.readouterr().out)
    assert cli["arms"] == doc["arms"] and cli["recommendation"] == doc["recommendation"]
    assert _cli(project, db, "results", "matured", "--now", "2025-03-01",
                "--params", str(project["root"] / "params.yaml")) == 0
    text = capsys.readouterr().out
    assert "recommendation:" in text and "Wilson" in text


def test_results_with_revenue(project: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite:///{tmp_path / 'store.db'}"
    store = _store(db)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    experiment = store.create("revenue", control=project["v1"], treatment=project["v2"], split=0.5,
                              now=start, **SETTINGS)
    rows = store.record(experiment, [{"lead_id": f"R{i}", "assigned_at": start} for i in range(400)])
    revenue = pd.DataFrame({"lead_id": [r["lead_id"] for r in rows[:50]], "amount": np.arange(50) * 100.0})
    revenue.to_csv(tmp_path / "revenue.csv", index=False)
    assert _cli(project, db, "results", "revenue", "--now", "2025-03-01", "--json", "--revenue",
                str(tmp_path / "revenue.csv"), "--revenue-column", "amount") == 0
    doc = json.loads(capsys.readouterr().out)
    amounts = revenue.set_index("lead_id")["amount"]
    per_arm = {arm: float(amounts.reindex([r["lead_id"] for r in rows if r["arm"] == arm]).fillna(0).mean())
               for arm in ("control", "treatment")}
    assert doc["revenue"]["mean_control"] == pytest.approx(per_arm["control"])
    assert doc["revenue"]["mean_treatment"] == pytest.approx(per_arm["treatment"])
    assert doc["revenue"]["diff"] == pytest.approx(per_arm["treatment"] - per_arm["control"])
