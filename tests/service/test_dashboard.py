"""The dashboard: sign-in cookie, its use by the JSON API, the dashboard's endpoints (TestClient), and the
page itself in Chromium against a real `leadscore serve --workers 2`."""

from __future__ import annotations

import sys
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from browser_support import browser_context
from conftest import PG_URL, make_flat_leads
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from server_support import SERVE, Server, free_port, launch, wait_until_served
from service_support import ADMIN_KEY, LEAD, SCORER_KEY, make_registry, to_payload, write_keys

from leadscore.artifacts.bundle import load_bundle
from leadscore.artifacts.paths import default_store_url
from leadscore.artifacts.registry import Registry
from leadscore.monitoring.alerts import CheckState
from leadscore.monitoring.drift import drift_by_period
from leadscore.monitoring.exposition import save_states
from leadscore.monitoring.predlog import (
    count_logged,
    open_database,
    read_lead_scores,
    read_recent,
    read_served,
)
from leadscore.scoring.scorer import Scorer
from leadscore.service.app import create_app
from leadscore.service.dashboard import cache as dashboard_cache
from leadscore.service.dashboard import panels as dashboard_panels
from leadscore.service.dashboard.cache import PanelCache, default_jobs, keep_warm
from leadscore.service.dashboard.panels import MAX_POINTS
from leadscore.service.routes import SESSION_COOKIE
from leadscore.service.settings import ServiceSettings

with warnings.catch_warnings():  # starlette asks for httpx2, which is not installed
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


def sign_in(client: TestClient, key: str) -> httpx.Response:
    return client.post("/dashboard/session", data={"key": key}, follow_redirects=False)


# --- sign-in and the session cookie ---------------------------------------------------------------------

def test_sign_in_sets_a_strict_http_only_cookie_and_never_shows_the_key(client: TestClient) -> None:
    form = client.get("/dashboard")
    assert form.status_code == 200 and '<label for="key">API key</label>' in form.text
    assert "default-src 'none'" in form.headers["content-security-policy"]
    response = sign_in(client, ADMIN_KEY)
    assert response.status_code == 303 and response.headers["location"] == "/dashboard"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=") and "httponly" in cookie.lower()
    assert "samesite=strict" in cookie.lower() and "path=/" in cookie.lower()
    assert "secure" not in cookie.lower()
    page = client.get("/dashboard")
    assert page.status_code == 200 and 'id="panel-model"' in page.text
    assert ADMIN_KEY not in page.text and ADMIN_KEY not in response.headers["location"]
    assert client.get("/dashboard/static/dashboard.js").status_code == 200
    assert client.get("/dashboard/static/signin.html").status_code == 404
    assert not any(path.startswith("/dashboard") for path in client.get("/openapi.json").json()["paths"])


def test_cookie_is_secure_over_https(settings: ServiceSettings) -> None:
    with TestClient(create_app(settings), base_url="https://testserver") as secure:
        assert "secure" in sign_in(secure, SCORER_KEY).headers["set-cookie"].lower()


def test_wrong_key_shows_the_form_again_with_401_and_no_cookie(client: TestClient) -> None:
    response = sign_in(client, "lsk_wrong-key")
    assert response.status_code == 401 and "not valid" in response.text
    assert "set-cookie" not in response.headers and "lsk_wrong-key" not in response.text
    assert client.get("/v1/dashboard/whoami").status_code == 401


def test_logout_clears_the_cookie(client: TestClient) -> None:
    sign_in(client, SCORER_KEY)
    assert client.get("/v1/dashboard/whoami").json() == {"name": "crm", "role": "scorer"}
    response = client.post("/dashboard/logout", follow_redirects=False)
    assert response.status_code == 303 and f'{SESSION_COOKIE}=""' in response.headers["set-cookie"]
    assert client.get("/v1/dashboard/whoami").status_code == 401
    assert "<form" in client.get("/dashboard").text


def test_cookie_authorises_the_api_with_the_same_roles(client: TestClient,
                                                       registry: tuple[Registry, str, str]) -> None:
    sign_in(client, SCORER_KEY)
    assert client.get("/v1/model").json()["version"] == registry[1]
    assert client.post("/v1/model/rollback").status_code == 403
    assert client.post(f"/v1/model/activate/{registry[2]}").status_code == 403
    # the header wins over the cookie
    assert client.get("/v1/dashboard/whoami", headers={"X-API-Key": ADMIN_KEY}).json()["role"] == "admin"
    assert client.get("/v1/dashboard/whoami", headers={"X-API-Key": "lsk_wrong"}).status_code == 401
    client.cookies.clear()
    sign_in(client, ADMIN_KEY)
    assert client.post(f"/v1/model/activate/{registry[2]}").status_code == 200
    assert client.post("/v1/model/rollback").json()["active"] == registry[1]
    assert client.post("/v1/model/train").status_code == 409  # no --train-crm


# --- the dashboard's JSON endpoints ---------------------------------------------------------------------

def _wait_logged(client: TestClient, n: int) -> None:
    predlog = client.app.state.service.predlog  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10
    while count_logged(predlog.engine, predlog.table) < n:
        assert time.monotonic() < deadline, "scores not logged"
        time.sleep(0.05)


def test_model_panel_has_radar_metrics_and_importance(client: TestClient) -> None:
    body = client.get("/v1/dashboard/model", headers={"X-API-Key": SCORER_KEY}).json()
    assert set(body["metrics"]) == {"precision", "recall", "f1", "roc_auc", "accuracy"}
    assert body["metrics"]["roc_auc"] == 0.71 and "precision" in body["missing"]
    assert 0 < len(body["importance"]) <= 10 and abs(sum(i["share"] for i in body["importance"]) - 1) < 0.01


def test_lead_scores_newest_first_without_shadow_rows_and_404(client: TestClient) -> None:
    key = {"X-API-Key": SCORER_KEY}
    for budget in (1000.0, 90000.0):
        assert client.post("/v1/score", json={**LEAD, "budget": budget}, headers=key).status_code == 200
        time.sleep(0.01)
    _wait_logged(client, 2)
    predlog = client.app.state.service.predlog  # type: ignore[attr-defined]
    with predlog.engine.begin() as conn:  # a challenger's shadow score, newer than both
        conn.execute(predlog.table.insert().values(
            request_id="r", lead_id="L1", model_version="challenger", probability=0.5, score=50, tier="B",
            inputs={}, outputs={"shadow": True}, scored_at=datetime.now(UTC) + timedelta(seconds=5)))
    body = client.get("/v1/leads/L1/scores", headers=key).json()
    history = body["history"]
    assert len(history) == 2 and body["latest"] == history[0]
    assert history[0]["scored_at"] > history[1]["scored_at"]
    assert {h["model_version"] for h in history} != {"challenger"} and set(history[0]["reasons"]) == {
        "positive", "negative"}
    assert client.get("/v1/leads/nobody/scores", headers=key).status_code == 404
    summary = client.get("/v1/dashboard/scores?days=7", headers=key).json()
    assert summary["count"] == 2 and sum(b["count"] for b in summary["bins"]) == 2
    assert sum(summary["tiers"].values()) == 2
    assert client.get("/v1/dashboard/scores?days=0", headers=key).status_code == 422


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_log_reads_skip_shadow_rows(dialect: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}" if dialect == "sqlite" else PG_URL
    name = f"dash_{uuid.uuid4().hex[:8]}"
    engine, table, outcomes = open_database(url, name, f"{name}_outcomes")
    now = datetime.now(UTC)
    logged = [("v1", 10, {"reasons": {}}), ("v1", 20, {}), ("c", 30, {"shadow": True})]
    rows = [{"request_id": "r", "lead_id": "L1", "model_version": version, "probability": score / 100,
             "score": score, "tier": "A", "inputs": {"budget": float(score), "source": "web"},
             "outputs": outputs, "scored_at": now + timedelta(seconds=i)}
            for i, (version, score, outputs) in enumerate(logged)]
    try:
        with engine.begin() as conn:
            conn.execute(table.insert(), rows)
        assert [r["score"] for r in read_lead_scores(engine, table, "L1", limit=5)] == [20, 10]
        assert read_lead_scores(engine, table, "L2", limit=5) == []
        assert read_recent(engine, table, since=now, limit=1)["score"].tolist() == [20]
        served = read_served(engine, table, since=now, version=None, limit=5, inputs=True)
        assert served[["model_version", "budget", "source"]].values.tolist() == [["v1", 20.0, "web"],
                                                                                 ["v1", 10.0, "web"]]
        assert f"ix_{name}_scored_at" in {i["name"] for i in sa.inspect(engine).get_indexes(name)}
    finally:
        table.drop(engine)
        outcomes.drop(engine)
        engine.dispose()


def _monday(at: datetime) -> str:
    return (at - timedelta(days=at.weekday())).strftime("%Y-%m-%d")


def test_performance_per_week_with_registry_events(client: TestClient,
                                                   registry: tuple[Registry, str, str]) -> None:
    _, v1, v2 = registry
    svc = client.app.state.service  # type: ignore[attr-defined]
    predlog, now = svc.predlog, datetime.now(UTC)
    logged: list[tuple[str, str, datetime, dict[str, Any]]] = []
    outcomes: dict[str, tuple[bool, datetime | None]] = {}
    for week in (1, 2, 3):
        at = now - timedelta(weeks=week, hours=1)
        for i in range(4 + week):  # 5, 6 and 7 leads
            lead = f"W{week}-{i}"
            logged.append((lead, v1, at + timedelta(minutes=i), {}))
            if i < week:  # 1, 2 and 3 converted within the window
                outcomes[lead] = (True, at + timedelta(days=1))
            elif i < 4:  # the rest of the first four lost; the others stay open
                outcomes[lead] = (False, None)
    logged += [("W1-0", "challenger", now - timedelta(weeks=1), {"shadow": True}),  # shadow: skipped
               ("V2-0", v2, now - timedelta(weeks=1), {}),  # another version: skipped by default
               ("OLD-0", v1, now - timedelta(weeks=30), {})]  # outside 26 weeks
    with predlog.engine.begin() as conn:
        conn.execute(predlog.table.insert(), [
            {"request_id": "r", "lead_id": lead, "model_version": version, "probability": 0.1 + 0.05 * n,
             "score": 10 + n, "tier": "B", "inputs": {}, "outputs": outputs, "scored_at": at}
            for n, (lead, version, at, outputs) in enumerate(logged)])
    for lead, (converted, at) in outcomes.items():
        svc.outcomes.record(lead, converted, at)
    key = {"X-API-Key": SCORER_KEY}
    body = client.get("/v1/dashboard/performance", headers=key).json()
    assert body["version"] == v1 and body["weeks"] == 26 and body["label_window_days"] == 90
    counts: dict[str, list[int]] = {}  # by hand: leads, labelled, converted per Monday
    for lead, _version, at, _outputs in logged[:-3]:
        week_counts = counts.setdefault(_monday(at), [0, 0, 0])
        week_counts[0] += 1
        week_counts[1] += lead in outcomes
        week_counts[2] += outcomes.get(lead, (False, None))[0]
    expected = {week: (n, labelled, converted, converted / labelled)
                for week, (n, labelled, converted) in counts.items()}
    got = {w["week"]: (w["leads"], w["labelled"], w["converted"], w["conversion"]) for w in body["series"]}
    assert got == expected and sorted(n for n, *_ in expected.values()) == [5, 6, 7]
    assert {w["model_version"] for w in body["series"]} == {v1}
    assert all(w["roc_auc"] is None and w["open"] == w["leads"] - 4 for w in body["series"])
    probabilities: dict[str, list[float]] = {}  # fewer than 50 conversions: every label drawn from the scores
    for n, (_lead, _version, at, _outputs) in enumerate(logged[:-3]):
        probabilities.setdefault(_monday(at), []).append(0.1 + 0.05 * n)
    for w in body["series"]:
        mean = sum(probabilities[w["week"]]) / len(probabilities[w["week"]])
        assert w["est_conversion_low"] <= w["est_conversion"] <= w["est_conversion_high"]
        assert abs(w["est_conversion"] - mean) < 0.03, (w, mean)
    assert body["matured_weeks"] == 3
    assert any(e["event"] == "activate" and e["version"] == v1 for e in body["events"])
    # kept 30 s: a new score does not change the answer; another range is computed afresh
    with predlog.engine.begin() as conn:
        conn.execute(predlog.table.insert().values(
            request_id="r", lead_id="NEW", model_version=v1, probability=0.5, score=50, tier="B", inputs={},
            outputs={}, scored_at=now - timedelta(days=1)))
    assert client.get("/v1/dashboard/performance", headers=key).json() == body
    both = client.get("/v1/dashboard/performance?weeks=26&all_versions=true", headers=key).json()
    assert {w["model_version"] for w in both["series"]} == {v1, v2}
    assert sum(w["leads"] for w in both["series"]) == len(logged) - 2 + 1  # no shadow, no old; NEW
    assert client.get("/v1/dashboard/performance?weeks=105", headers=key).status_code == 422
    assert client.get("/v1/dashboard/performance?weeks=0", headers=key).status_code == 422
    assert client.get("/v1/dashboard/performance").status_code == 401


def test_performance_without_scores_and_monitoring_states(client: TestClient) -> None:
    key = {"X-API-Key": SCORER_KEY}
    empty = client.get("/v1/dashboard/performance?weeks=4", headers=key).json()
    assert empty["series"] == [] and empty["matured_weeks"] == 0
    assert client.get("/v1/dashboard/monitoring").status_code == 401
    none = client.get("/v1/dashboard/monitoring", headers=key).json()
    assert none["checked_at"] is None and none["drift"] == [] and none["states"] == {}
    states = [CheckState("drift", "v1", "budget", "2026-11-30", "alert", "PSI 0.31 >= 0.25", 0.31),
              CheckState("drift", "v1", "industry", "2026-11-30", "ok", "PSI 0.02", 0.02),
              CheckState("score_drift", "v1", "score", "2026-11-30", "warn", "score PSI 0.12", 0.12),
              CheckState("performance", "v1", "roc_auc", "2026-11", "ok", "realized ROC-AUC 0.70", 0.7),
              CheckState("estimated_performance", "v1", "roc_auc", "2026-11", "warn", "estimated", None)]
    checked = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
    save_states(client.app.state.service.predlog.engine, states, checked)  # type: ignore[attr-defined]
    body = client.get("/v1/dashboard/monitoring", headers=key).json()
    assert datetime.fromisoformat(body["checked_at"]) == checked
    assert [(d["subject"], d["value"], d["state"]) for d in body["drift"]] == [
        ("budget", 0.31, "alert"), ("industry", 0.02, "ok")]
    assert [d["reason"] for d in body["score_drift"]] == ["score PSI 0.12"]
    assert {(d["check"], d["state"], d["value"]) for d in body["performance"]} == {
        ("performance", "ok", 0.7), ("estimated_performance", "warn", None)}
    assert body["other"] == [] and body["states"] == {"alert": 1, "ok": 2, "warn": 2}


def _log(client: TestClient, rows: list[dict[str, Any]]) -> None:
    predlog = client.app.state.service.predlog  # type: ignore[attr-defined]
    with predlog.engine.begin() as conn:
        conn.execute(predlog.table.insert(), [
            {"request_id": "r", "tier": "B", "outputs": {}, "score": int(100 * row["probability"]), **row}
            for row in rows])


def _payloads(client: TestClient, n: int, seed: int) -> tuple[list[dict[str, Any]], Any]:
    served = client.app.state.service.holder.current  # type: ignore[attr-defined]
    schema = served.scorer.schema
    frame = make_flat_leads(n, seed=seed).assign(created="2024-03-01 10:00")
    return [to_payload(row, schema, omit_missing=True) for row in frame.to_dict("records")], served


def test_drift_heatmap_per_week_flags_the_shifted_feature(client: TestClient) -> None:
    payloads, served = _payloads(client, 500, seed=11)  # 250 a week: the drift check needs 200
    now = datetime.now(UTC)
    monday = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=now.weekday())
    rows = []
    for i, inputs in enumerate(payloads):
        late = i >= 250  # the second week's budgets are 50 times larger
        if late and inputs.get("budget") is not None:
            inputs = {**inputs, "budget": inputs["budget"] * 50}
        at = monday - timedelta(weeks=1 if late else 2) + timedelta(days=1, minutes=i % 250)
        rows.append({"lead_id": f"D{i}", "model_version": served.version, "probability": 0.2,
                     "inputs": inputs, "scored_at": at})
    _log(client, rows)
    key = {"X-API-Key": SCORER_KEY}
    body = client.get("/v1/dashboard/drift?weeks=4", headers=key).json()
    assert body["version"] == served.version and body["leads"] == 500 and not body["truncated"]
    early, late = (_monday(monday - timedelta(weeks=w)) for w in (2, 1))
    assert body["periods"] == [early, late]
    assert body["features"][0] == "(score)" and "budget" in body["features"]
    cells = {(c["feature"], c["period"]): c for c in body["cells"]}
    assert cells[("budget", late)]["state"] == "alert" and cells[("budget", late)]["psi"] > 0.25
    assert cells[("budget", early)]["psi"] < cells[("budget", late)]["psi"] / 5
    assert {c["feature"] for c in body["cells"]} == set(body["features"])
    worst = [max(c["psi"] or 0 for c in body["cells"] if c["feature"] == f) for f in body["features"][1:]]
    assert worst == sorted(worst, reverse=True)  # the most drifted feature first
    # the same figures `leadscore monitor check` draws from these rows
    frame = pd.DataFrame([{**r["inputs"], "scored_at": r["scored_at"]} for r in rows])
    weekly = drift_by_period(frame, served.scorer.bundle, served.version, times=frame["scored_at"],
                             probabilities=np.full(len(frame), 0.2), by="week")
    expected = {(str(f["feature"]), str(w["period"])): round(f["psi"], 6)
                for w in weekly for f in w["features"]}
    assert all(cells[key_]["psi"] == expected[key_] for key_ in cells if key_[0] != "(score)")
    _log(client, [{**rows[0], "lead_id": "D-new", "scored_at": now}])
    assert client.get("/v1/dashboard/drift?weeks=4", headers=key).json() == body  # kept 30 s
    assert client.get("/v1/dashboard/drift?weeks=53", headers=key).status_code == 422
    assert client.get("/v1/dashboard/drift").status_code == 401


def test_drift_without_inputs_or_scores_says_why(client: TestClient) -> None:
    key = {"X-API-Key": SCORER_KEY}
    none = client.get("/v1/dashboard/drift?weeks=2", headers=key).json()
    assert none["cells"] == [] and "no leads scored" in none["note"]
    served = client.app.state.service.holder.current  # type: ignore[attr-defined]
    _log(client, [{"lead_id": "E1", "model_version": served.version, "probability": 0.3, "inputs": {},
                   "scored_at": datetime.now(UTC)}])
    body = client.get("/v1/dashboard/drift?weeks=3", headers=key).json()
    assert body["cells"] == [] and body["note"].startswith("drift cannot be judged")


def test_segments_split_leads_by_their_defining_trait_with_conversion_by_hand(client: TestClient) -> None:
    payloads, served = _payloads(client, 200, seed=12)
    svc = client.app.state.service  # type: ignore[attr-defined]
    now = datetime.now(UTC)
    rows, big = [], set()
    for i, inputs in enumerate(payloads):
        large = i % 2 == 0
        inputs = {**inputs, "budget": 2_000_000.0 + i if large else 500.0 + i, "email": "a@acme.com"}
        big |= {f"S{i}"} if large else set()
        rows.append({"lead_id": f"S{i}", "model_version": served.version,
                     "probability": 0.6 if large else 0.1, "inputs": inputs,
                     "scored_at": now - timedelta(days=3, minutes=i)})
    rows.append({**rows[0], "probability": 0.7, "scored_at": now - timedelta(days=1)})  # S0 again: newest
    _log(client, rows)
    # outcomes: the first 30 leads of each group; 20 of the large and 5 of the small ones converted
    for group, converted in ((sorted(big, key=lambda x: int(x[1:])), 20),
                             (sorted({f"S{i}" for i in range(200)} - big, key=lambda x: int(x[1:])), 5)):
        for n, lead in enumerate(group[:30]):
            svc.outcomes.record(lead, n < converted, now - timedelta(days=2) if n < converted else None)
    key = {"X-API-Key": SCORER_KEY}
    body = client.get("/v1/dashboard/segments?days=30&k=2", headers=key).json()
    assert body["version"] == served.version and body["leads"] == 200 and body["k"] == 2
    assert body["note"] is None and len(body["segments"]) == 2
    high, low = body["segments"]  # highest mean probability first
    assert (high["leads"], low["leads"]) == (100, 100) and high["share"] == 0.5
    assert (high["labelled"], high["converted"], high["conversion"]) == (30, 20, round(20 / 30, 4))
    assert (low["labelled"], low["converted"], low["conversion"]) == (30, 5, round(5 / 30, 4))
    assert high["mean_probability"] == round((0.7 + 99 * 0.6) / 100, 4) and low["mean_probability"] == 0.1
    assert "high budget" in high["traits"] and "low budget" in low["traits"]
    assert len(body["points"]) == 200 and {p["cluster"] for p in body["points"]} == {
        high["cluster"], low["cluster"]}
    few = client.get("/v1/dashboard/segments?days=2&k=2", headers=key).json()  # S0's newest score only
    assert few["segments"] == [] and few["note"].startswith("1 lead(s) scored")
    assert "20 are needed for 2 segments" in few["note"]
    assert client.get("/v1/dashboard/segments?k=1", headers=key).status_code == 422
    assert client.get("/v1/dashboard/segments?k=13", headers=key).status_code == 422


@hypothesis_settings(max_examples=25, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_segments_account_for_every_lead_whatever_the_log(bundles: tuple[Path, Path], data: Any) -> None:
    """Any log (repeated and missing lead ids, missing fields, any outcomes): every lead in one segment
    once, labels counted only where an outcome or the window says so, the scatter a sample of them."""
    bundle = load_bundle(bundles[0])
    now = datetime(2026, 6, 1, tzinfo=UTC)
    n = data.draw(st.one_of(st.integers(0, 20), st.integers(60, 120)), label="rows")
    k = data.draw(st.integers(2, 4), label="k")
    ids = data.draw(st.lists(st.one_of(st.none(), st.sampled_from([f"L{i}" for i in range(150)])),
                             min_size=n, max_size=n), label="lead ids")
    budgets = data.draw(st.lists(st.one_of(st.none(), st.floats(1, 1e7)), min_size=n, max_size=n))
    ages = data.draw(st.lists(st.floats(0, 200), min_size=n, max_size=n), label="days since scoring")
    frame = pd.DataFrame({
        "lead_id": pd.Series(ids, dtype=object), "model_version": "v1", "probability": 0.3,
        "scored_at": [now - timedelta(days=a) for a in ages],
        "budget": budgets, "source": "referral", "created": "2024-03-01 10:00", "email": "a@acme.com"})
    frame = frame.sort_values("scored_at", ascending=False, ignore_index=True)
    decided = data.draw(st.dictionaries(st.sampled_from([f"L{i}" for i in range(150)]), st.booleans()))
    converted_at = [now - timedelta(days=1) if c else None for c in decided.values()]
    outcomes = pd.DataFrame({"lead_id": list(decided), "converted": list(decided.values()),
                             "converted_at": converted_at, "recorded_at": now - timedelta(days=1)})
    outcomes["converted_at"] = pd.to_datetime(outcomes["converted_at"], utc=True)
    got = dashboard_panels.segment_summary(frame, outcomes, bundle, version="v1", days=365, k=k,
                                         truncated=False, window_days=90, now=now)
    distinct = frame["lead_id"].dropna().nunique() + int(frame["lead_id"].isna().sum())
    assert got.leads == distinct
    event("segmented" if got.note is None else "too few leads or nothing that varies")
    if got.note is not None:
        assert got.segments == [] and got.points == []
        return
    assert sum(seg.leads for seg in got.segments) == distinct and len(got.segments) <= k
    assert abs(sum(seg.share for seg in got.segments) - 1) < 1e-3
    decided_in_log = {lead for lead in frame["lead_id"].dropna() if lead in decided}
    old_enough = frame.dropna(subset=["lead_id"]).drop_duplicates("lead_id")
    expired = {lead for lead, at in zip(old_enough["lead_id"], old_enough["scored_at"], strict=True)
               if at <= now - timedelta(days=90) and lead not in decided}
    assert sum(seg.labelled for seg in got.segments) == len(decided_in_log | expired)
    assert all(0 <= seg.converted <= seg.labelled <= seg.leads for seg in got.segments)
    assert len(got.points) == min(MAX_POINTS, distinct)
    assert {p.cluster for p in got.points} <= {seg.cluster for seg in got.segments}


# --- the panels' cache: fresh, then stale while recomputed in the background ------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _settled(cache: PanelCache) -> None:
    deadline = time.monotonic() + 10
    while cache.pending():
        assert time.monotonic() < deadline, "background computation did not finish"
        time.sleep(0.01)


def test_panel_cache_answers_stale_while_it_recomputes_in_the_background() -> None:
    clock, calls = Clock(), []

    def compute() -> int:
        calls.append(clock.now)
        return len(calls)

    cache = PanelCache(fresh=30, stale=900, clock=clock)
    assert cache.get("k", compute) == 1 and calls == [0.0]      # absent: computed in the request
    clock.now = 29.9
    assert cache.get("k", compute) == 1 and calls == [0.0]      # fresh: as kept
    clock.now = 31
    assert cache.get("k", compute) == 1                          # stale: the kept answer at once ...
    _settled(cache)
    assert calls == [0.0, 31] and cache.get("k", compute) == 2   # ... and its successor computed aside
    clock.now = 31 + 900
    assert cache.get("k", compute) == 3 and cache.pending() == 0  # too old to show: computed in the request

    def broken() -> int:
        raise ValueError("the store went away")

    clock.now += 31
    assert cache.get("k", broken) == 3                           # a failed refresh keeps the older answer
    _settled(cache)
    assert cache.get("k", compute) == 3                          # and the next request tries again
    _settled(cache)
    assert cache.get("k", compute) == 4


def test_panel_cache_warms_only_what_is_missing_or_old() -> None:
    clock, calls = Clock(), []
    cache = PanelCache(fresh=30, stale=900, clock=clock)
    cache.warm("k", lambda: calls.append("a") or "a")
    _settled(cache)
    assert calls == ["a"] and cache.get("k", lambda: "request") == "a"   # computed ahead of the request
    clock.now = 100
    cache.warm("k", lambda: calls.append("b") or "b", older_than=780)
    _settled(cache)
    assert calls == ["a"]                                                # young enough: left alone
    clock.now = 800
    cache.warm("k", lambda: calls.append("c") or "c", older_than=780)
    _settled(cache)
    assert calls == ["a", "c"] and cache.get("k", lambda: "request") == "c"

    def down() -> str:
        calls.append("down")
        raise ConnectionError("the store is down")

    cache.warm("x", down)
    _settled(cache)
    for _ in range(3):  # failed a moment ago: not tried again on every look
        clock.now += 5
        cache.warm("x", down)
        _settled(cache)
    assert calls.count("down") == 1 and cache.age("x") is None
    clock.now += dashboard_cache.RETRY_SECONDS
    cache.warm("x", lambda: "up")
    _settled(cache)
    assert cache.get("x", lambda: "request") == "up"
    cache.close()


def test_panel_cache_close_stops_its_thread_and_drops_what_waits() -> None:
    before = set(threading.enumerate())
    started, release = threading.Event(), threading.Event()
    cache = PanelCache(fresh=30, stale=900, clock=Clock())
    cache.close()  # nothing started yet: nothing to stop

    def slow() -> str:
        started.set()
        release.wait(10)
        return "slow"

    cache.warm("a", slow)
    assert started.wait(10)
    cache.warm("b", lambda: "queued")  # waits behind "a"
    refresh = [t for t in set(threading.enumerate()) - before if t.name == "dashboard-refresh"]
    assert len(refresh) == 1
    closing = threading.Thread(target=cache.close)
    closing.start()
    release.set()
    closing.join(10)
    assert not closing.is_alive() and not refresh[0].is_alive()
    assert cache.pending() == 0 and cache.age("a") is not None and cache.age("b") is None
    cache.warm("b", lambda: "later")  # a later refresh starts a new thread
    _settled(cache)
    assert cache.get("b", lambda: "request") == "later"
    cache.close()


def test_keep_warm_computes_the_default_panels_of_the_served_version(client: TestClient) -> None:
    svc = client.app.state.service  # type: ignore[attr-defined]
    served = svc.holder.current
    stop = threading.Event()
    cache: PanelCache = client.app.state.panel_cache  # type: ignore[attr-defined]
    worker = threading.Thread(target=keep_warm, args=(svc, cache, stop), kwargs={"every": 0.05}, daemon=True)
    worker.start()
    try:
        keys = [key for key, _ in default_jobs(svc, served)]
        deadline = time.monotonic() + 30
        while not all(cache.age(key) is not None for key in keys):
            assert time.monotonic() < deadline, "the default panels were not computed"
            time.sleep(0.05)
    finally:
        stop.set()
        worker.join(10)
    assert {key[3] for key in keys} == {"performance", "drift", "segments", "scores", "experiments"}
    assert all(served.version in key for key in keys if key[3] not in ("scores", "experiments"))
    body = client.get("/v1/dashboard/segments", headers={"X-API-Key": SCORER_KEY}).json()
    kept = cache.get(keys[2], lambda: None)
    assert body == kept.model_dump(mode="json")  # the page's first request is answered from the cache


def test_each_app_owns_its_panel_cache_and_stops_its_threads_with_it(settings: ServiceSettings) -> None:
    before = set(threading.enumerate())
    first, second = create_app(replace(settings, warm_dashboard=True)), create_app(settings)
    assert first.state.panel_cache is not second.state.panel_cache
    with TestClient(first) as client:
        first.state.panel_cache.warm("k", lambda: "kept")
        _settled(first.state.panel_cache)
        started = {t.name for t in set(threading.enumerate()) - before}
        assert {"dashboard-warm", "dashboard-refresh"} <= started
        assert client.get("/health").status_code == 200
    assert not [t for t in set(threading.enumerate()) - before if t.name.startswith("dashboard-")]
    assert second.state.panel_cache.age("k") is None  # nothing shared between apps


# --- the page in a browser against a real server --------------------------------------------------------

@pytest.fixture
def server(tmp_path: Path, bundles: tuple[Path, Path]) -> Iterator[tuple[Server, str, str]]:
    reg, v1, v2 = make_registry(tmp_path / "registry", bundles)
    port = free_port()
    argv = [sys.executable, *SERVE, "--port", str(port), "--workers", "2", "--registry", str(reg.root),
            "--keys", str(write_keys(tmp_path / "keys.yaml")), "--rate-limit", "0", "--poll-interval", "0.2",
            "--no-warm-dashboard"]  # the panels as the test leaves the store, not as a warm-up found it
    srv = launch(argv, tmp_path / "serve.log", 2, reg.root, port=port)
    try:
        srv.wait_ready()
        yield srv, v1, v2
    finally:
        srv.stop()


def _score_some(url: str, schema: Any, n: int, prefix: str = "") -> list[str]:
    rows = [{**row, "lead_id": f"{prefix}{row['lead_id']}"}
            for row in make_flat_leads(n, seed=3).to_dict("records")]
    with httpx.Client(base_url=url, headers={"X-API-Key": SCORER_KEY}, timeout=30) as http:
        for row in rows:
            assert http.post("/v1/score", json=to_payload(row, schema, omit_missing=True)).status_code == 200
    return [str(row["lead_id"]) for row in rows]


def _run_experiment(url: str, schema: Any, control: str, treatment: str) -> None:
    """An experiment whose conversion window (about 2 s) closes while the test goes on, with outcomes."""
    body = {"name": "ab", "control": control, "treatment": treatment, "window_days": 2.5e-5,
            "min_days": 2.5e-5}
    created = httpx.post(f"{url}/v1/experiments", json=body, headers={"X-API-Key": ADMIN_KEY}, timeout=30)
    assert created.status_code == 201, created.text
    rows = make_flat_leads(24, seed=5).to_dict("records")
    with httpx.Client(base_url=url, headers={"X-API-Key": SCORER_KEY}, timeout=30) as http:
        for i, row in enumerate(rows):
            payload = {**to_payload(row, schema, omit_missing=True), "lead_id": f"X{i}"}
            assert http.post("/v1/score?experiment=ab", json=payload).status_code == 200
            converted = i % 3 == 0
            outcome = {"lead_id": f"X{i}", "converted": converted,
                       "converted_at": datetime.now(UTC).isoformat() if converted else None}
            assert http.post("/v1/outcomes", json=outcome).status_code == 200


def _served_everywhere(url: str, version: str, timeout: float = 30.0) -> None:
    wait_until_served(url, version, 2, timeout)
    for _ in range(8):  # whichever worker answers
        model = httpx.get(f"{url}/v1/model", headers={"X-API-Key": SCORER_KEY}, timeout=10).json()
        assert model["version"] == version


def _sign_in(page: Any, url: str, key: str) -> None:
    page.goto(f"{url}/dashboard")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("body[data-ready='true']", timeout=20_000)


PANELS = ("panel-model", "panel-importance", "panel-scores", "panel-performance", "panel-monitoring",
          "panel-segments", "panel-versions", "panel-experiments", "panel-lead")


def test_dashboard_in_a_browser(server: tuple[Server, str, str], tmp_path: Path) -> None:
    srv, v1, v2 = server
    url, admin = srv.url, {"X-API-Key": ADMIN_KEY}
    schema = Scorer.load(v1, registry=tmp_path / "registry").schema
    leads = _score_some(url, schema, 8)  # by v1, then by v2: two entries per lead
    assert httpx.post(f"{url}/v1/model/activate/{v2}", headers=admin, timeout=30).status_code == 200
    _served_everywhere(url, v2)
    _score_some(url, schema, 8)
    _score_some(url, schema, 60, prefix="B")  # enough leads of v2 for five segments
    with httpx.Client(base_url=url, headers={"X-API-Key": SCORER_KEY}, timeout=30) as http:
        for i, lead in enumerate(leads[:4]):  # labels that matured at once: two converted, two lost
            outcome = {"lead_id": lead, "converted": i < 2,
                       "converted_at": datetime.now(UTC).isoformat() if i < 2 else None}
            assert http.post("/v1/outcomes", json=outcome).status_code == 200
    store = sa.create_engine(default_store_url(tmp_path / "registry"))
    save_states(store, [CheckState("drift", v2, "budget", "2026-11-30", "alert", "PSI 0.31 >= 0.25", 0.31),
                        CheckState("drift", v2, "industry", "2026-11-30", "warn", "PSI 0.15", 0.15),
                        CheckState("drift", v2, "source", "2026-11-30", "ok", "PSI 0.01", 0.01),
                        CheckState("score_drift", v2, "score", "2026-11-30", "ok", "score PSI 0.03", 0.03)],
                datetime.now(UTC))
    store.dispose()
    _run_experiment(url, schema, v1, v2)
    time.sleep(2.5)  # the experiment's conversion window closes
    errors: list[str] = []
    outside: list[str] = []
    with browser_context(tmp_path / "profile") as context:
        page = context.new_page()
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("request",
                lambda req: None if req.url.startswith((url, "data:")) else outside.append(req.url))
        page.set_viewport_size({"width": 1280, "height": 900})
        _sign_in(page, url, ADMIN_KEY)
        timing = page.evaluate("() => { const n = performance.getEntriesByType('navigation')[0];"
                               " return [n.domContentLoadedEventEnd, performance.now()]; }")
        print(f"dashboard: DOMContentLoaded {timing[0]:.0f} ms, every panel drawn by {timing[1]:.0f} ms")
        assert ADMIN_KEY not in page.content() and ADMIN_KEY not in page.url
        page.get_by_label("Lead id").fill(leads[0])
        page.get_by_role("button", name="Look up").click()
        page.wait_for_selector("#lead-facts dd")
        assert page.locator("#lead-history circle").count() == 2
        for panel in PANELS:
            shapes = page.locator(f"#{panel} svg").first.evaluate("svg => svg.childElementCount")
            assert shapes > 0, f"{panel}: empty chart"
        assert page.locator("#importance rect").count() > 0 and page.locator("#radar polygon").count() == 5
        assert page.locator("#experiments circle").count() == 2
        assert page.locator("#performance circle").count() > 0  # v2's week has matured labels
        assert page.locator("#performance-legend li").count() == 4
        assert page.locator("#performance circle.est-auc").count() > 0  # v2's week still has open leads
        assert page.locator("#drift-heatmap rect.cell").count() > 0
        assert page.locator("#segments-scatter circle").count() == 8 + 60 + 24  # every lead v2 served
        assert page.locator("#segments tbody tr").count() == 5
        assert page.locator("#performance line.marker").count() > 0  # v2's activation
        assert page.locator("#drift rect").count() == 3
        assert page.locator("#drift rect.state-alert").count() == 1
        assert "PSI 0.31 >= 0.25" in page.locator("#monitoring-reasons").inner_text()
        assert page.get_by_text("Recommendation:").count() == 1
        assert errors == [], errors
        page.screenshot(path=str(tmp_path / "dashboard-1280.png"), full_page=True)
        page.set_viewport_size({"width": 390, "height": 844})
        page.screenshot(path=str(tmp_path / "dashboard-390.png"), full_page=True)
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
        page.set_viewport_size({"width": 1280, "height": 900})

        # keyboard only: from the days field, Tab to the segments count, type 3, Enter submits the form
        page.get_by_role("spinbutton", name="Segments", exact=True).focus()
        page.keyboard.press("Shift+Tab")
        assert page.evaluate("() => document.activeElement.id") == "segment-days"
        page.keyboard.press("Tab")
        page.keyboard.press("Control+A")
        page.keyboard.type("3")
        page.keyboard.press("Enter")
        page.wait_for_function("() => document.querySelectorAll('#segments tbody tr').length === 3")
        assert "in 3 k-means segments" in page.locator("#segments-note").inner_text()

        page.get_by_role("button", name="Train now").click()
        page.wait_for_selector("#versions-note:has-text('not configured')")
        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name="Roll back").click()
        page.wait_for_selector(f"#versions-note:has-text('Now serving {v1}')")
        _served_everywhere(url, v1)

        page.get_by_role("button", name="Sign out").click()
        page.wait_for_selector("text=API key")
        _sign_in(page, url, SCORER_KEY)
        assert page.locator("#rollback").is_disabled() and page.locator("#train").is_disabled()
        assert page.locator("#rollback").get_attribute("title") == "Needs an admin key"
        assert "need an admin key" in page.locator("#versions-note").inner_text()
        activate = page.get_by_role("button", name=f"Activate {v2}")
        assert activate.is_disabled()
        status = page.evaluate("() => fetch('/v1/model/rollback',"
                               " {method: 'POST', credentials: 'same-origin'}).then(r => r.status)")
        assert status == 403
    assert outside == []
    assert ADMIN_KEY not in srv.log.read_text(errors="replace")
