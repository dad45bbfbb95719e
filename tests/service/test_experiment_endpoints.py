"""The experiment endpoints and scoring inside an experiment, through the real app (TestClient), with the
store in SQLite: permissions, stickiness, answers carrying the arm's score, exposures written before
the answer, results equal to the library's, and clear errors."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, make_flat_leads
from fastapi.testclient import TestClient
from service_support import ADMIN_KEY, SCORER_KEY, to_payload, write_keys

from leadscore.artifacts.bundle import save_bundle
from leadscore.artifacts.registry import Registry
from leadscore.core.config import load_params
from leadscore.experiments.assignment import arm_of
from leadscore.experiments.results import experiment_results
from leadscore.experiments.store import ExperimentStore
from leadscore.monitoring.outcomes import OutcomeStore
from leadscore.monitoring.predlog import open_database
from leadscore.scoring.scorer import Scorer
from leadscore.service.app import create_app
from leadscore.service.settings import ServiceSettings
from leadscore.training.fit import fit_table

RULES = [{"feature": "source", "op": "in", "value": ["referral"], "points": 30, "label": "Referral"}]


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str, Path]:
    root = tmp_path_factory.mktemp("exp-api")
    train = make_flat_leads(600, seed=4)
    registry = Registry(root / "registry")
    v1 = registry.register(save_bundle(fit_table(train, target="converted", id_column="lead_id",
                                                 candidates=["logistic"]).bundle, root / "b1"),
                           activate=True, now=datetime(2025, 1, 1, tzinfo=UTC))
    v2 = registry.register(save_bundle(fit_table(train, target="converted", id_column="lead_id",
                                                 candidates=["lightgbm"]).bundle, root / "b2"),
                           now=datetime(2025, 1, 2, tzinfo=UTC))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["rules"] = RULES
    params["experiments"]["min_days"] = 7
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root, v1, v2, root / "params.yaml"


@pytest.fixture
def api(versions: tuple[Path, str, str, Path], tmp_path: Path) -> Iterator[tuple[TestClient, str]]:
    root, _, _, params = versions
    url = f"sqlite:///{tmp_path / 'store.db'}"
    settings = ServiceSettings(registry=root / "registry", keys_file=write_keys(tmp_path / "keys.yaml"),
                               rate_limit=0, poll_interval=0.1, log_url=url, log_flush_interval=0.05,
                               train_params=params)
    with TestClient(create_app(settings)) as client:
        yield client, url


def _h(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


def test_create_needs_admin_and_known_versions(api: tuple[TestClient, str],
                                               versions: tuple[Path, str, str, Path]) -> None:
    client, _ = api
    body = {"name": "ml-vs-rules", "treatment": versions[2]}
    assert client.post("/v1/experiments", json=body).status_code == 401
    assert client.post("/v1/experiments", json=body, headers=_h(SCORER_KEY)).status_code == 403
    missing = client.post("/v1/experiments", json={**body, "treatment": "20990101000000"},
                          headers=_h(ADMIN_KEY))
    assert missing.status_code == 404
    created = client.post("/v1/experiments", json=body, headers=_h(ADMIN_KEY))
    assert created.status_code == 201, created.text
    info = created.json()
    assert info["control"] == "rules" and info["split"] == 0.5 and info["min_days"] == 7
    assert "salt" not in info
    again = client.post("/v1/experiments", json=body, headers=_h(ADMIN_KEY))
    assert again.status_code == 409 and "already exists" in again.json()["detail"]
    bad = client.post("/v1/experiments", json={**body, "name": "x", "split": 1.5}, headers=_h(ADMIN_KEY))
    assert bad.status_code == 422
    listed = client.get("/v1/experiments", headers=_h(SCORER_KEY)).json()["experiments"]
    assert [e["name"] for e in listed] == ["ml-vs-rules"]
    stop = client.post("/v1/experiments/ml-vs-rules/stop", headers=_h(SCORER_KEY))
    assert stop.status_code == 403


def test_scoring_in_an_experiment(api: tuple[TestClient, str], versions: tuple[Path, str, str, Path]) -> None:
    client, url = api
    root, v1, v2, _ = versions
    assert client.post("/v1/experiments", json={"name": "e1", "treatment": v2},
                       headers=_h(ADMIN_KEY)).status_code == 201
    leads = make_flat_leads(40, seed=21).drop(columns="converted")
    schema = Registry(root / "registry").load(v1).schema
    payloads = [to_payload(row, schema, omit_missing=True) for row in leads.to_dict("records")]
    answers = []
    for payload in payloads[:10]:
        response = client.post("/v1/score?experiment=e1", json=payload, headers=_h(SCORER_KEY))
        assert response.status_code == 200, response.text
        answers.append(response.json())
    batch = client.post("/v1/score/batch?experiment=e1", json={"leads": payloads[10:]},
                        headers=_h(SCORER_KEY))
    assert batch.status_code == 200, batch.text
    answers += batch.json()["results"]

    store = ExperimentStore(open_database(url, "prediction_log", "outcomes")[0])
    experiment = store.get("e1")
    exposures = store.exposure_frame("e1").set_index("lead_id")
    assert len(exposures) == 40  # durable before the answers came back
    treatment = Scorer(Registry(root / "registry").load(v2), v2).score_frame(leads, reasons=0)
    for answer, expected in zip(answers, treatment.itertuples(), strict=True):
        arm = answer["experiment"]
        assert answer["model_version"] == v1  # the served model still answers at the top level
        assert arm["arm"] == arm_of(experiment.salt, answer["lead_id"], 0.5) \
            == exposures.loc[answer["lead_id"], "arm"]
        assert exposures.loc[answer["lead_id"], "treatment_score"] == expected.score
        if arm["arm"] == "treatment":
            assert (arm["ranked_by"], arm["score"]) == (v2, expected.score)
            assert arm["probability"] == pytest.approx(expected.probability)
        else:
            referral = leads.loc[leads["lead_id"] == answer["lead_id"], "source"].iloc[0] == "referral"
            assert (arm["ranked_by"], arm["score"], arm["probability"]) == ("rules", 30 * referral, None)
    # sticky: scoring and assigning again give the first arm and time
    first = exposures.loc[answers[0]["lead_id"]]
    again = client.post("/v1/score?experiment=e1", json=payloads[0], headers=_h(SCORER_KEY)).json()
    assert again["experiment"]["arm"] == first["arm"]
    assigned = client.post(f"/v1/experiments/e1/assign/{answers[0]['lead_id']}",
                           headers=_h(SCORER_KEY)).json()
    assert assigned["arm"] == first["arm"]
    assert pd.Timestamp(assigned["assigned_at"]) == first["assigned_at"]

    unknown = client.post("/v1/score?experiment=nope", json=payloads[0], headers=_h(SCORER_KEY))
    assert unknown.status_code == 404 and "no experiment 'nope'" in unknown.json()["detail"]
    no_id = {k: v for k, v in payloads[0].items() if k != "lead_id"}
    refused = client.post("/v1/score?experiment=e1", json=no_id, headers=_h(SCORER_KEY))
    assert refused.status_code == 422 and "lead id" in refused.json()["detail"]
    stopped = client.post("/v1/experiments/e1/stop?reason=done", headers=_h(ADMIN_KEY))
    assert stopped.status_code == 200 and stopped.json()["status"] == "stopped"
    assert stopped.json()["assigned"] == {"control": int((exposures["arm"] == "control").sum()),
                                          "treatment": int((exposures["arm"] == "treatment").sum())}
    late = client.post("/v1/score?experiment=e1", json=payloads[0], headers=_h(SCORER_KEY))
    assert late.status_code == 409 and "stopped" in late.json()["detail"]
    assert client.post("/v1/experiments/e1/assign/L9", headers=_h(SCORER_KEY)).status_code == 409
    assert client.post("/v1/experiments/e1/stop", headers=_h(ADMIN_KEY)).status_code == 409


def test_results_endpoint_equals_the_library(api: tuple[TestClient, str],
                                             versions: tuple[Path, str, str, Path]) -> None:
    client, url = api
    _, v1, v2, params = versions
    engine, _, outcomes_table = open_database(url, "prediction_log", "outcomes")
    store = ExperimentStore(engine)
    start = datetime.now(UTC) - timedelta(days=200)
    experiment = store.create("past", control=v1, treatment=v2, split=0.5, window_days=30, min_days=14,
                              mde=0.05, alpha=0.05, now=start)
    rng = np.random.default_rng(2)
    rows = store.record(experiment, [{"lead_id": f"P{i}", "assigned_at": start + timedelta(hours=i),
                                      "covariate": float(rng.uniform(0.05, 0.3))} for i in range(3000)])
    outcomes = OutcomeStore(engine, outcomes_table)
    outcomes.record_many([{"lead_id": r["lead_id"], "converted": True,
                           "converted_at": r["assigned_at"] + timedelta(days=3)}
                          for r in rows if rng.random() < (0.25 if r["arm"] == "treatment" else 0.12)])
    response = client.get("/v1/experiments/past/results", headers=_h(SCORER_KEY))
    assert response.status_code == 200, response.text
    doc = response.json()
    expected = experiment_results(experiment, store.exposure_frame("past"), outcomes.frame(),
                                  load_params(params).experiments, now=pd.Timestamp.now(tz="UTC")).to_dict()
    assert doc["arms"] == expected["arms"] and doc["lift"] == expected["lift"]
    assert doc["arms"][0]["n"] + doc["arms"][1]["n"] == 3000
    assert doc["recommendation"]["action"] == "deploy"
    assert "salt" not in doc["experiment"] and doc["experiment"]["name"] == "past"  # arms stay unpredictable
    assert client.get("/v1/experiments/none/results", headers=_h(SCORER_KEY)).status_code == 404
    # the dashboard's experiments panel: the same analysis, newest experiment first
    panel = client.get("/v1/dashboard/experiments", headers=_h(SCORER_KEY)).json()
    listed = [e["name"] for e in client.get("/v1/experiments", headers=_h(SCORER_KEY)).json()["experiments"]]
    assert panel["total"] == len(listed) and panel["limit"] == 3
    assert [e["experiment"]["name"] for e in panel["experiments"]] == listed[:3]
    shown = {e["experiment"]["name"]: e for e in panel["experiments"]}
    assert shown["past"]["arms"] == doc["arms"] and shown["past"]["recommendation"] == doc["recommendation"]
    assert "salt" not in shown["past"]["experiment"]

    # /metrics: assigned and matured leads and conversion per arm, as the results count them
    from prometheus_client.parser import text_string_to_metric_families

    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    rates = {s.labels["arm"]: s.value for s in families["leadscore_experiment_conversion_rate"].samples
             if s.labels["experiment"] == "past"}
    matured = {s.labels["arm"]: s.value for s in families["leadscore_experiment_matured_leads"].samples
               if s.labels["experiment"] == "past"}
    for arm in doc["arms"]:
        assert rates[arm["arm"]] == pytest.approx(arm["rate"]) and matured[arm["arm"]] == arm["n"]
    assigned = [s for s in families["leadscore_experiment_assigned_leads"].samples
                if s.labels["experiment"] == "past"]
    assert sum(s.value for s in assigned) == 3000 and {s.labels["status"] for s in assigned} == {"running"}
