"""The scoring service in process (TestClient): schema, batch parity, auth, limits, log, switches.

Models are tiny real ones fitted on ``make_flat_leads``; the prediction log is a real SQLite file (and the
PostgreSQL test server where reachable). ``test_service_http.py`` runs the same app under uvicorn.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from conftest import PG_URL, make_flat_leads

from leadscore.artifacts.bundle import MODEL_FILE, save_bundle
from leadscore.artifacts.registry import Registry
from leadscore.cli.serve import add_serve_command
from leadscore.core.exceptions import ConfigError
from leadscore.monitoring.predlog import PredictionLog, PredictionLogFull, open_database
from leadscore.scoring.scorer import Scorer
from leadscore.service.app import create_app
from leadscore.service.auth import KeyStore, generate_key, hash_key, load_keys
from leadscore.service.ratelimit import TokenBuckets
from leadscore.service.settings import ServiceSettings
from leadscore.training.fit import fit_table

with warnings.catch_warnings():  # starlette asks for httpx2, which is not installed
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from service_support import (
    ADMIN_KEY,
    LEAD,
    LIMITED_KEY,
    SCORE_FIELDS,
    SCORER_KEY,
    TARGET,
    batch_results,
    comparable,
    leads_v2,
    log_rows,
    to_payload,
    write_keys,
)


@pytest.fixture
def settings(settings: ServiceSettings) -> ServiceSettings:
    """The shared settings (conftest.py) with batches of at most 300 leads."""
    return replace(settings, batch_limit=300)


def auth(key: str = SCORER_KEY) -> dict[str, str]:
    return {"X-API-Key": key}


def test_score_returns_every_scorer_field(client: TestClient, registry: tuple[Registry, str, str]) -> None:
    response = client.post("/v1/score", json=LEAD, headers=auth())
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == SCORE_FIELDS | {"request_id"}
    assert body["request_id"] == response.headers["x-request-id"]
    assert body["lead_id"] == "L1" and body["model_version"] == registry[1]
    assert 0 <= body["probability"] <= 1 and body["score"] == round(100 * body["probability"])
    assert 0 <= body["confidence"] <= 1 and body["tier"] and body["action"]
    assert set(body["reasons"]) == {"positive", "negative"}
    assert 0 < len(body["reasons"]["positive"]) + len(body["reasons"]["negative"]) <= 6
    assert all(set(r) == {"field", "points", "text"} for side in body["reasons"].values() for r in side)
    assert pd.Timestamp(body["scored_at"]).tzinfo is not None
    # fewer reasons on request, none at all, and the client's own request id is kept
    one = client.post("/v1/score?reasons=1", json=LEAD, headers={**auth(), "X-Request-ID": "crm-42"}).json()
    assert all(len(side) <= 1 for side in one["reasons"].values()) and one["request_id"] == "crm-42"
    none = client.post("/v1/score?reasons=0", json=LEAD, headers=auth()).json()
    assert none["reasons"] == {"positive": [], "negative": []} and none["probability"] == body["probability"]


def test_api_scores_equal_batch_scores(client: TestClient, registry: tuple[Registry, str, str]) -> None:
    """The same leads through POST /v1/score, POST /v1/score/batch and ``score_frame``: identical results."""
    reg, v1, v2 = registry
    for version, frame in ((v1, make_flat_leads(200, seed=7)), (v2, leads_v2(200, seed=8))):
        if version == v2:
            assert client.post(f"/v1/model/activate/{v2}", headers=auth(ADMIN_KEY)).status_code == 200
        scorer = Scorer.load(version, registry=reg.root)
        expected = batch_results(scorer, frame)
        rows = frame.to_dict("records")
        payloads = [to_payload(row, scorer.schema, omit_missing=i % 2 == 0) for i, row in enumerate(rows)]
        assert any(row["budget"] == "N/A" for row in rows) and any(row["source"] == "" for row in rows)
        batch = client.post("/v1/score/batch", json={"leads": payloads}, headers=auth())
        assert batch.status_code == 200, batch.text
        assert batch.json()["model_version"] == version and batch.json()["count"] == len(rows)
        assert [comparable(r) for r in batch.json()["results"]] == expected
        for payload, want in list(zip(payloads, expected, strict=True))[:25]:
            single = client.post("/v1/score", json=payload, headers=auth())
            assert comparable(single.json()) == want


def test_missing_optional_fields_score_like_absent_columns(client: TestClient,
                                                           registry: tuple[Registry, str, str]) -> None:
    scorer = Scorer.load(registry[1], registry=registry[0].root)
    minimal = {"created": "2024-03-04T10:30:00", "email": "x@gmail.com"}
    got = client.post("/v1/score", json=minimal, headers=auth()).json()
    frame = pd.DataFrame([minimal])      # the optional columns are absent from the batch file
    assert comparable(got) == batch_results(scorer, frame)[0]
    assert got["lead_id"] == 1           # no id sent: the position, as in batch scoring
    nulls = client.post("/v1/score", json={**minimal, "source": None, "budget": None, "region": None},
                        headers=auth()).json()
    assert comparable(nulls) == comparable(got)
    ignored = client.post("/v1/score", json={**minimal, "notes": "called twice"}, headers=auth())
    assert ignored.status_code == 200 and comparable(ignored.json()) == comparable(got)


def test_model_without_id_column_still_echoes_and_logs_lead_ids(tmp_path: Path) -> None:
    frame = make_flat_leads(300, seed=2).drop(columns=["lead_id"])
    result = fit_table(frame, target=TARGET, candidates=["logistic"])
    reg = Registry(tmp_path / "registry")
    reg.register(save_bundle(result.bundle, tmp_path / "bundle"), activate=True)
    settings = ServiceSettings(registry=reg.root, keys_file=write_keys(tmp_path / "keys.yaml"))
    scorer = Scorer.load(registry=reg.root)
    assert scorer.schema.id_column is None
    payload = to_payload(frame.iloc[0].to_dict(), scorer.schema, omit_missing=True)
    with TestClient(create_app(settings)) as client:
        one = client.post("/v1/score", json={**payload, "lead_id": "CRM-1"}, headers=auth()).json()
        batch = client.post("/v1/score/batch", json={"leads": [payload, {**payload, "lead_id": 7}]},
                            headers=auth()).json()
    assert one["lead_id"] == "CRM-1" and [r["lead_id"] for r in batch["results"]] == [1, 7]
    assert {**comparable(one), "lead_id": 1} == batch_results(scorer, frame.iloc[[0]])[0]
    assert [r["lead_id"] for r in log_rows(settings.prediction_log_url)] == ["CRM-1", "1", "7"]


@pytest.mark.parametrize(("body", "loc", "kind"), [
    ({**LEAD, "budget": "12,000"}, ["body", "budget"], "float_type"),
    ({**LEAD, "budget": True}, ["body", "budget"], "float_type"),
    ({**LEAD, "budget": 1e16}, ["body", "budget"], "less_than_equal"),
    ({**LEAD, "source": 3}, ["body", "source"], "string_type"),
    ({**LEAD, "budgett": 5}, ["body", "budgett"], "extra_forbidden"),
    ({**LEAD, "converted": "yes"}, ["body", "converted"], "extra_forbidden"),
    ({k: v for k, v in LEAD.items() if k != "email"}, ["body", "email"], "missing"),
    ({**LEAD, "email": None}, ["body", "email"], "string_type"),
    ({**LEAD, "created": "last tuesday"}, ["body", "created"], "string_pattern_mismatch"),
    ({**LEAD, "created": "2024-02-31"}, ["body", "created"], "value_error"),
    ({**LEAD, "created": "1850-01-01"}, ["body", "created"], "string_pattern_mismatch"),
    ({**LEAD, "lead_id": "x" * 201}, ["body", "lead_id"], "value_error"),
    ([LEAD], ["body"], "model_type"),
])
def test_invalid_leads_get_422_with_field_messages(client: TestClient, body: Any, loc: list[Any],
                                                   kind: str) -> None:
    response = client.post("/v1/score", json=body, headers=auth())
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert {"loc": loc, "type": kind} in [{"loc": e["loc"], "type": e["type"]} for e in errors], errors
    assert all(e["msg"] for e in errors) and "input" not in errors[0]


@pytest.mark.parametrize("text", ['{"budget": NaN}', '{"budget": Infinity}', '{"budget": -Infinity}',
                                  '{"budget": 1e400}'])
def test_nan_and_infinity_are_rejected(client: TestClient, text: str) -> None:
    body = text.replace("{", '{"created": "2024-01-01", "email": "a@b.co", ', 1)
    response = client.post("/v1/score", content=body, headers={**auth(), "content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "budget"]
    assert response.json()["detail"][0]["type"] == "finite_number"


def test_malformed_bodies_and_queries_get_4xx(client: TestClient) -> None:
    for content in (b"", b"{", b"\xff\xfe", b"null", b'"lead"'):
        response = client.post("/v1/score", content=content, headers=auth())
        assert response.status_code == 422, (content, response.text)
    assert client.post("/v1/score?reasons=21", json=LEAD, headers=auth()).status_code == 422
    assert client.post("/v1/score?reasons=x", json=LEAD, headers=auth()).status_code == 422
    batch = client.post("/v1/score/batch", json={"leads": [LEAD] * 301}, headers=auth())
    assert batch.status_code == 422 and batch.json()["detail"][0]["type"] == "too_long"
    assert client.post("/v1/score/batch", json={"leads": []}, headers=auth()).status_code == 422
    bad = client.post("/v1/score/batch", json={"leads": [LEAD, {**LEAD, "budget": "x"}]}, headers=auth())
    assert bad.json()["detail"][0]["loc"] == ["body", "leads", 1, "budget"]
    assert client.get("/v1/nothing", headers=auth()).status_code == 404
    assert client.get("/v1/score", headers=auth()).status_code == 405


def test_body_size_limit_before_parsing(settings: ServiceSettings) -> None:
    small = replace(settings, **{"max_body_bytes": 2000})
    with TestClient(create_app(small)) as client:
        big = {**LEAD, "notes": "x" * 3000}
        declared = client.post("/v1/score", json=big, headers=auth())
        assert declared.status_code == 413 and "at most 2000 bytes" in declared.json()["detail"]

        def chunks() -> Iterator[bytes]:     # no Content-Length: chunked transfer
            yield json.dumps(big)[:1500].encode()
            yield json.dumps(big)[1500:].encode()

        chunked = client.post("/v1/score", content=chunks(), headers=auth())
        assert chunked.status_code == 413
        assert client.post("/v1/score", json=LEAD, headers=auth()).status_code == 200
        assert client.post("/v1/score", content=b"{}", headers={**auth(), "content-length": "abc"}) \
            .status_code == 400
        metrics = client.get("/metrics").text
        assert 'leadscore_errors_total{endpoint="/v1/score",kind="too_large"} 2.0' in metrics


# --- security -------------------------------------------------------------------------------------------

def test_keys_roles_and_no_key_in_logs(client: TestClient, registry: tuple[Registry, str, str],
                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    v2 = registry[2]
    missing = client.post("/v1/score", json=LEAD)
    assert missing.status_code == 401 and "X-API-Key" in missing.json()["detail"]
    assert missing.headers["www-authenticate"] == "ApiKey"
    wrong = client.post("/v1/score", json=LEAD, headers=auth(SCORER_KEY + "x"))
    assert wrong.status_code == 401 and wrong.json()["detail"] == "invalid API key"
    assert client.post("/v1/score", json=LEAD, headers=auth(ADMIN_KEY)).status_code == 200  # scrypt key
    for path in (f"/v1/model/activate/{v2}", "/v1/model/rollback"):
        forbidden = client.post(path, headers=auth())
        assert forbidden.status_code == 403 and "needs 'admin'" in forbidden.json()["detail"]
        assert client.post(path).status_code == 401
    for path in ("/v1/model", "/v1/model/versions"):
        assert client.get(path).status_code == 401 and client.get(path, headers=auth()).status_code == 200
    assert client.post("/v1/outcomes", json={"lead_id": "L1", "converted": True}).status_code == 401
    for path in ("/health", "/ready", "/metrics", "/openapi.json", "/docs"):
        assert client.get(path).status_code == 200
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    for key in (SCORER_KEY, ADMIN_KEY, SCORER_KEY + "x"):
        assert key not in logged
    assert "unknown API key" in caplog.text


def test_key_file_format_and_errors(tmp_path: Path) -> None:
    keys = load_keys(write_keys(tmp_path / "keys.yaml"))
    assert [(k.name, k.role, k.rate_limit) for k in keys] == [("crm", "scorer", None), ("ops", "admin", None),
                                                              ("slow-client", "scorer", 2.0)]
    store = KeyStore(keys)
    assert store.lookup(SCORER_KEY).name == "crm" and store.lookup(ADMIN_KEY).name == "ops"  # type: ignore[union-attr]
    assert store.lookup("nope") is None and store.lookup(None) is None and store.lookup("x" * 300) is None
    assert SCORER_KEY not in (tmp_path / "keys.yaml").read_text()
    as_json = tmp_path / "keys.json"
    as_json.write_text(json.dumps({"keys": [{"name": "a", "role": "admin", "hash": hash_key("k1")}]}))
    assert KeyStore.from_file(as_json).lookup("k1").role == "admin"  # type: ignore[union-attr]
    entry = {"name": "a", "role": "scorer", "hash": hash_key("k1")}
    cases = [({"keys": [{**entry, "role": "root"}]}, "role: expected one of scorer, admin, got 'root'"),
             ({"keys": [{**entry, "hash": "md5:abc"}]}, "hash: expected 'sha256:<64 hex>'"),
             ({"keys": [entry, {**entry, "hash": hash_key("k2")}]}, "duplicate name: a"),
             ({"keys": [entry, {**entry, "name": "b"}]}, "duplicate hash: 1 hash"),
             ({"keys": [{**entry, "key": "k1"}]}, "unknown field"),
             ({"keys": []}, "no keys"), ({"users": []}, "expected a mapping with a 'keys' list")]
    for content, message in cases:
        as_json.write_text(json.dumps(content))
        with pytest.raises(ConfigError, match=message):
            load_keys(as_json)
    with pytest.raises(ConfigError, match="cannot read it"):
        load_keys(tmp_path / "absent.yaml")
    (tmp_path / "bad.yaml").write_text("keys: [")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_keys(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="API keys file"):
        create_app(ServiceSettings(registry=tmp_path, keys_file=None))
    assert generate_key() != generate_key() and len(generate_key()) > 40


def test_rate_limit_per_key_with_retry_after(client: TestClient) -> None:
    statuses = [client.post("/v1/score", json=LEAD, headers=auth(LIMITED_KEY)) for _ in range(4)]
    assert [r.status_code for r in statuses[:2]] == [200, 200]          # burst of 2 (rate_limit: 2/s)
    limited = statuses[2]
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert "rate limit of 2 requests/s for API key 'slow-client'" in limited.json()["detail"]
    assert client.post("/v1/score", json=LEAD, headers=auth()).status_code == 200  # other keys unaffected
    time.sleep(0.6)
    assert client.post("/v1/score", json=LEAD, headers=auth(LIMITED_KEY)).status_code == 200
    assert 'kind="rate_limited"' in client.get("/metrics").text


TAKER = textwrap.dedent("""
    import sys, time
    from leadscore.service.ratelimit import TokenBuckets
    buckets = TokenBuckets(["k"], sys.argv[1])
    start = float(sys.argv[2])
    while time.time() < start:
        time.sleep(0.001)
    print(sum(buckets.take("k", rate=0.01, burst=30) == 0.0 for _ in range(200)))
""")


def test_token_buckets_are_shared_by_processes(tmp_path: Path) -> None:
    path = tmp_path / "buckets.bin"
    start = str(time.time() + 1.0)
    takers = [subprocess.Popen([sys.executable, "-c", TAKER, str(path), start], stdout=subprocess.PIPE,
                               text=True) for _ in range(3)]
    granted = [int(p.communicate(timeout=30)[0]) for p in takers]
    assert sum(granted) == 30, granted          # one bucket of 30 for all three processes
    local = TokenBuckets(["a", "b"])
    assert [local.take("a", 1.0, 2.0) for _ in range(3)][:2] == [0.0, 0.0]
    assert 0.5 < local.take("a", 1.0, 2.0) <= 1.0 and local.take("b", 1.0, 2.0) == 0.0
    assert local.take("a", 0.0, 1.0) == 0.0     # rate 0: unlimited


# --- model info and switches ----------------------------------------------------------------------------

def test_model_info_and_versions(client: TestClient, registry: tuple[Registry, str, str]) -> None:
    _, v1, v2 = registry
    info = client.get("/v1/model", headers=auth()).json()
    assert info["version"] == v1 == info["active_in_registry"]
    assert info["metrics"] == {"roc_auc": 0.71, "pr_auc": 0.4, "brier": 0.12} and info["model"]
    assert [f["name"] for f in info["features"]] == ["created", "source", "budget", "email", "region"]
    assert [t["name"] for t in info["tiers"]][0] == "HIGH_PRIORITY" and info["metadata"]["version"] == v1
    versions = client.get("/v1/model/versions", headers=auth()).json()
    assert versions["active"] == versions["serving"] == v1
    assert [(v["version"], v["active"], v["serving"]) for v in versions["versions"]] == [
        (v2, False, False), (v1, True, True)]


def test_activate_and_rollback_regenerate_the_request_schema(client: TestClient,
                                                             registry: tuple[Registry, str, str]) -> None:
    reg, v1, v2 = registry
    with_employees = {**LEAD, "employees": 40}
    assert client.post("/v1/score", json=with_employees, headers=auth()).json()["detail"][0]["type"] \
        == "extra_forbidden"
    lead_schema = client.get("/openapi.json").json()["components"]["schemas"]["Lead"]
    assert "employees" not in lead_schema["properties"] and lead_schema["additionalProperties"] is False
    switched = client.post(f"/v1/model/activate/{v2}", headers=auth(ADMIN_KEY))
    assert switched.json() == {"active": v2, "previous": v1} and reg.active_version() == v2
    scored = client.post("/v1/score", json=with_employees, headers=auth())
    assert scored.status_code == 200 and scored.json()["model_version"] == v2
    assert "employees" in client.get("/openapi.json").json()["components"]["schemas"]["Lead"]["properties"]
    back = client.post("/v1/model/rollback", headers=auth(ADMIN_KEY))
    assert back.json() == {"active": v1, "previous": v2} and reg.active_version() == v1
    assert client.post("/v1/score", json=LEAD, headers=auth()).json()["model_version"] == v1
    again = client.post("/v1/model/rollback", headers=auth(ADMIN_KEY))
    assert again.status_code == 409 and "no earlier active version" in again.json()["detail"]
    unknown = client.post("/v1/model/activate/20200101000000", headers=auth(ADMIN_KEY))
    assert unknown.status_code == 404 and "no model version 20200101000000" in unknown.json()["detail"]
    assert client.post("/v1/model/activate/..%2F..", headers=auth(ADMIN_KEY)).status_code == 404
    for name in ("registry", "src", "tests"):            # folders here: never loaded, only registry versions
        refused = client.post(f"/v1/model/activate/{name}", headers=auth(ADMIN_KEY))
        assert refused.status_code == 404 and f"no model version {name}" in refused.json()["detail"]


def test_damaged_version_is_refused_and_the_old_one_kept(client: TestClient,
                                                         registry: tuple[Registry, str, str]) -> None:
    reg, v1, v2 = registry
    artifact = reg.path(v2) / MODEL_FILE
    artifact.write_bytes(artifact.read_bytes()[:-100])
    refused = client.post(f"/v1/model/activate/{v2}", headers=auth(ADMIN_KEY))
    assert refused.status_code == 409 and "sha256" in refused.json()["detail"]
    assert reg.active_version() == v1
    assert client.post("/v1/score", json=LEAD, headers=auth()).json()["model_version"] == v1


def test_switch_by_another_process_is_followed(client: TestClient,
                                               registry: tuple[Registry, str, str]) -> None:
    reg, v1, v2 = registry
    Registry(reg.root).activate(v2)          # as `leadscore models activate` or another worker would
    deadline = time.monotonic() + 10
    versions = []
    while time.monotonic() < deadline:
        versions.append(client.post("/v1/score", json=LEAD, headers=auth()).json()["model_version"])
        if versions[-1] == v2:
            break
        time.sleep(0.05)
    assert versions[-1] == v2 and set(versions) <= {v1, v2}
    assert client.get("/v1/model", headers=auth()).json()["version"] == v2


def test_not_ready_without_a_model_until_one_is_activated(tmp_path: Path, bundles: tuple[Path, Path]) -> None:
    reg = Registry(tmp_path / "empty")
    settings = ServiceSettings(registry=reg.root, keys_file=write_keys(tmp_path / "keys.yaml"),
                               poll_interval=0.1)
    with TestClient(create_app(settings)) as client:
        ready = client.get("/ready")
        assert ready.status_code == 503 and "has no active model" in ready.json()["detail"]
        assert client.get("/health").status_code == 200
        unavailable = client.post("/v1/score", json=LEAD, headers=auth())
        assert unavailable.status_code == 503 and "no model loaded" in unavailable.json()["detail"]
        assert client.get("/v1/model", headers=auth()).status_code == 503
        assert client.get("/openapi.json").status_code == 200
        version = reg.register(bundles[0], activate=True)
        deadline = time.monotonic() + 10
        while client.get("/ready").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.get("/ready").json() == {"status": "ready", "model_version": version, "detail": None}
        assert client.post("/v1/score", json=LEAD, headers=auth()).status_code == 200


# --- outcomes and the prediction log --------------------------------------------------------------------

def test_outcomes_are_upserted_per_lead(client: TestClient, settings: ServiceSettings) -> None:
    first = client.post("/v1/outcomes", json={"lead_id": "L7", "converted": False}, headers=auth())
    assert first.status_code == 200 and first.json()["converted"] is False
    again = client.post("/v1/outcomes", headers=auth(), json={"lead_id": "L7", "converted": True,
                                                               "converted_at": "2025-03-01T09:00:00+01:00"})
    assert again.json()["converted_at"] == "2025-03-01T08:00:00Z"
    client.post("/v1/outcomes", json={"lead_id": 8, "converted": True}, headers=auth())
    bad = [{"lead_id": "L9", "converted": False, "converted_at": "2025-03-01T09:00:00Z"},
           {"lead_id": "L9", "converted": True, "converted_at": "2025-03-01T09:00:00"},
           {"lead_id": "L9", "converted": "yes"}, {"lead_id": "", "converted": True},
           {"lead_id": "L9", "converted": True, "extra": 1}]
    for body in bad:
        assert client.post("/v1/outcomes", json=body, headers=auth()).status_code == 422, body
    engine = sa.create_engine(settings.prediction_log_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT lead_id, converted, converted_at FROM outcomes ORDER BY lead_id"))
        stored = [(r[0], bool(r[1]), r[2]) for r in rows]
    engine.dispose()
    assert stored == [("8", True, None), ("L7", True, "2025-03-01 08:00:00.000000")]  # SQLite: UTC text


def _score_and_close(settings: ServiceSettings, n_single: int, batch_size: int) -> list[dict[str, Any]]:
    sent = []
    with TestClient(create_app(settings)) as client:
        leads = [to_payload(r, Scorer.load(registry=settings.registry).schema, omit_missing=True)
                 for r in make_flat_leads(n_single + batch_size, seed=3).to_dict("records")]
        for lead in leads[:n_single]:
            body = client.post("/v1/score", json=lead, headers=auth()).json()
            sent.append({"request_id": body["request_id"], "inputs": lead, "outputs": body})
        batch = client.post("/v1/score/batch", json={"leads": leads[n_single:]}, headers=auth()).json()
        for lead, result in zip(leads[n_single:], batch["results"], strict=True):
            sent.append({"request_id": batch["request_id"], "inputs": lead, "outputs": result})
    return sent   # leaving the block runs the app's shutdown, which flushes the log


def _check_log(rows: list[dict[str, Any]], sent: list[dict[str, Any]]) -> None:
    assert len(rows) == len(sent)
    by_key = {(r["request_id"], r["lead_id"]): r for r in rows}
    for item in sent:
        row = by_key[(item["request_id"], item["outputs"]["lead_id"])]
        assert row["inputs"] == item["inputs"]
        outputs = {k: v for k, v in item["outputs"].items() if k != "request_id"}
        assert row["outputs"] == outputs and row["model_version"] == outputs["model_version"]
        assert row["score"] == outputs["score"] and row["probability"] == outputs["probability"]


def test_prediction_log_sqlite_complete_after_shutdown(settings: ServiceSettings) -> None:
    slow_flush = replace(settings, **{"log_flush_interval": 30.0, "log_batch_size": 1000})
    sent = _score_and_close(slow_flush, n_single=15, batch_size=120)  # nothing flushed before shutdown
    _check_log(log_rows(settings.prediction_log_url), sent)
    db = settings.registry.parent / "predictions.db"          # the default: next to the registry
    assert settings.prediction_log_url == f"sqlite:///{db}"
    with sqlite3.connect(db) as conn:                         # several workers append to one file
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.fixture
def pg_tables(pg_url: str) -> Iterator[tuple[str, str]]:
    engine = sa.create_engine(pg_url)
    names = (f"predlog_{uuid.uuid4().hex[:10]}", f"outcomes_{uuid.uuid4().hex[:10]}")
    yield names
    with engine.begin() as conn:
        for name in names:
            conn.execute(sa.text(f'DROP TABLE IF EXISTS "{name}"'))
    engine.dispose()


def test_prediction_log_postgresql(settings: ServiceSettings, pg_tables: tuple[str, str]) -> None:
    pg = replace(settings, **{"log_url": PG_URL, "log_table": pg_tables[0],
                            "outcomes_table": pg_tables[1], "log_batch_size": 50})
    sent = _score_and_close(pg, n_single=10, batch_size=200)
    _check_log(log_rows(PG_URL, pg_tables[0]), sent)
    with TestClient(create_app(pg)) as client:
        for converted in (False, True):
            client.post("/v1/outcomes", json={"lead_id": "P1", "converted": converted}, headers=auth())
    engine = sa.create_engine(PG_URL)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f'SELECT lead_id, converted FROM "{pg_tables[1]}"')).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [("P1", True)]


def test_prediction_log_retries_then_writes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    engine, table, _ = open_database(url, "prediction_log", "outcomes")
    failures: list[int] = []
    predlog = PredictionLog(engine, table, tmp_path / "journal", batch_size=10, flush_interval=0.02,
                            max_queue=25, on_failure=lambda: failures.append(1))
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE prediction_log"))            # every insert fails for now
    predlog.start()
    row = {"request_id": "r", "lead_id": "1", "model_version": "v", "probability": 0.5, "score": 50,
           "tier": "LOW", "inputs": {"a": 1}, "outputs": {"b": 2}, "scored_at": pd.Timestamp.now("UTC")}
    predlog.submit([dict(row) for _ in range(20)]).result(10)       # synced to the journal
    deadline = time.monotonic() + 10
    while not failures and time.monotonic() < deadline:
        time.sleep(0.01)
    assert failures and predlog.depth == 20                          # failed rows stay buffered
    with pytest.raises(PredictionLogFull, match="backlog is full"):
        predlog.submit([dict(row) for _ in range(6)])
    table.create(engine)                                              # the database recovers
    predlog.close()
    assert len(log_rows(url)) == 20 and predlog.depth == 0
    with pytest.raises(PredictionLogFull, match="shutting down"):
        predlog.submit([dict(row)])
    assert not list((tmp_path / "journal").glob("segment-*"))   # all shipped: the journal is emptied
    engine.dispose()


# --- metrics --------------------------------------------------------------------------------------------

def test_metrics_count_requests_predictions_and_errors(client: TestClient,
                                                       registry: tuple[Registry, str, str]) -> None:
    v1 = registry[1]
    for _ in range(3):
        client.post("/v1/score", json=LEAD, headers=auth())
    client.post("/v1/score/batch", json={"leads": [LEAD] * 5}, headers=auth())
    client.post("/v1/score", json={**LEAD, "budget": "x"}, headers=auth())
    client.post("/v1/score", json=LEAD)
    text = client.get("/metrics").text
    expected = [
        'leadscore_http_requests_total{endpoint="/v1/score",method="POST",status="200"} 3.0',
        'leadscore_http_requests_total{endpoint="/v1/score/batch",method="POST",status="200"} 1.0',
        'leadscore_http_request_duration_seconds_count{endpoint="/v1/score",method="POST",status="200"} 3.0',
        'leadscore_errors_total{endpoint="/v1/score",kind="validation"} 1.0',
        'leadscore_errors_total{endpoint="/v1/score",kind="unauthenticated"} 1.0',
        f'leadscore_prediction_score_count{{model_version="{v1}"}} 8.0',
        f'leadscore_model_loaded{{model_version="{v1}"}} 1.0',
        "leadscore_prediction_log_queue_depth ",
    ]
    for line in expected:
        assert line in text, line
    tiers = [line for line in text.splitlines() if line.startswith("leadscore_predictions_total{")]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in tiers) == 8.0
    assert all(f'model_version="{v1}"' in line for line in tiers)


# --- property-based run over the OpenAPI schema ---------------------------------------------------------

def test_openapi_fuzzing_finds_no_server_error(settings: ServiceSettings) -> None:
    """schemathesis: valid and invalid requests for every operation, as admin; none may get a 5xx."""
    import schemathesis
    from hypothesis import HealthCheck, Phase, given
    from hypothesis import settings as hypothesis_settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error

    fuzz = replace(settings, **{"rate_limit": 0, "batch_limit": 5})
    app = create_app(fuzz)
    seen: dict[str, set[int]] = {}
    with TestClient(app):
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        operations = [result.ok() for result in schema.get_all_operations()]
        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                @hypothesis_settings(max_examples=30, deadline=None, database=None, phases=[Phase.generate],
                                     derandomize=True, suppress_health_check=list(HealthCheck))
                @given(case=operation.as_strategy(generation_mode=mode))
                def check(case: Any) -> None:
                    response = case.call(headers={"X-API-Key": ADMIN_KEY})
                    seen.setdefault(f"{case.method} {case.path}", set()).add(response.status_code)
                    case.validate_response(response, checks=[not_a_server_error])

                try:
                    check()
                except Unsatisfiable:  # no inputs (GET /health, ...): no invalid request to make
                    assert mode is GenerationMode.NEGATIVE

    assert 200 in seen["POST /v1/score"] and 422 in seen["POST /v1/score"]
    assert 200 in seen["POST /v1/score/batch"] and 200 in seen["POST /v1/outcomes"]
    assert 409 in seen["POST /v1/leads/{lead_id}/score"]  # no CRM database: says how to add one
    assert len(seen) == 27  # every operation of the API was exercised


# --- settings and CLI -----------------------------------------------------------------------------------

def test_settings_round_trip_and_validation(tmp_path: Path) -> None:
    settings = ServiceSettings(registry=tmp_path / "reg", keys_file=tmp_path / "k.yaml", rate_limit=5)
    assert ServiceSettings.from_json(settings.to_json()) == settings
    assert settings.burst == 5.0 and ServiceSettings(rate_limit=0.5).burst == 1.0
    assert settings.prediction_log_url == f"sqlite:///{tmp_path / 'predictions.db'}"
    for bad, message in [({"batch_limit": 0}, "batch_limit: expected an integer >= 1, got 0"),
                         ({"rate_limit": -1}, "rate_limit: expected a non-negative number"),
                         ({"poll_interval": 0}, "poll_interval: expected a positive number"),
                         ({"default_reasons": 21}, "default_reasons: expected an integer from 0 to 20"),
                         ({"log_table": "x; drop"}, "log_table: expected a table name")]:
        with pytest.raises(ConfigError, match=message):
            ServiceSettings(**bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown key"):
        ServiceSettings.from_json('{"registery": "x"}')
    with pytest.raises(ConfigError, match="LEADSCORE_SERVICE_SETTINGS is not set"):
        ServiceSettings.from_env()


def run_cli(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="leadscore")
    add_serve_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    args.func(args)


def test_cli_key_helpers_and_help(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("my-secret-key\n"))
    run_cli(["serve", "--hash-key"])
    assert capsys.readouterr().out.strip() == hash_key("my-secret-key")
    monkeypatch.setattr(sys, "stdin", io.StringIO("my-secret-key\n"))
    run_cli(["serve", "--hash-key", "--scrypt"])
    hashed = capsys.readouterr().out.strip()
    assert hashed.startswith("scrypt:") and "my-secret-key" not in hashed
    run_cli(["serve", "--new-key", "crm-sync", "--role", "admin"])
    printed = capsys.readouterr()
    key = printed.err.strip().rsplit(": ", 1)[1]
    assert key not in printed.out  # stdout is the entry only: `>> keys.yaml` never stores the key
    (tmp_path / "keys.yaml").write_text("keys:\n" + printed.out)
    found = KeyStore.from_file(tmp_path / "keys.yaml").lookup(key)
    assert found is not None and (found.name, found.role) == ("crm-sync", "admin")
    # with --keys the entry is appended to the file, which is created private with its header
    keys_file = tmp_path / "new-keys.yaml"
    for name in ("crm", "ops"):
        run_cli(["serve", "--new-key", name, "--keys", str(keys_file)])
        added = capsys.readouterr()
        assert added.out == "" and f"added {name} (scorer) to {keys_file}" in added.err
        second_key = added.err.splitlines()[0].rsplit(": ", 1)[1]
        assert second_key not in keys_file.read_text()
        assert KeyStore.from_file(keys_file).lookup(second_key).name == name
    assert keys_file.stat().st_mode & 0o777 == 0o600 and keys_file.read_text().count("keys:") == 1
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["serve", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--host", "--port", "--workers", "--registry", "--keys FILE", "--log-db URL",
                   "--batch-limit", "--rate-limit", "--hash-key", "--new-key NAME"):
        assert option in text
    monkeypatch.delenv("LEADSCORE_API_KEYS", raising=False)
    with pytest.raises(ConfigError, match="needs an API keys file"):
        run_cli(["serve", "--registry", str(tmp_path)])
    with pytest.raises(ConfigError, match="--workers: expected an integer >= 1"):
        run_cli(["serve", "--registry", str(tmp_path), "--keys", str(tmp_path / "keys.yaml"),
                 "--workers", "0"])
    with pytest.raises(ConfigError, match="batch_limit"):
        run_cli(["serve", "--keys", str(tmp_path / "keys.yaml"), "--batch-limit", "0"])


def test_concurrent_requests_never_mix_versions(client: TestClient,
                                                registry: tuple[Registry, str, str]) -> None:
    """Threads scoring batches while the admin switches back and forth: each response has one version."""
    _, v1, v2 = registry
    errors: list[str] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            response = client.post("/v1/score/batch", json={"leads": [LEAD] * 20}, headers=auth())
            if response.status_code != 200:
                errors.append(response.text)
                continue
            versions = {r["model_version"] for r in response.json()["results"]}
            if versions != {response.json()["model_version"]} or not versions <= {v1, v2}:
                errors.append(str(versions))

    threads = [threading.Thread(target=load) for _ in range(3)]
    for thread in threads:
        thread.start()
    for i in range(6):
        client.post(f"/v1/model/activate/{(v2, v1)[i % 2]}", headers=auth(ADMIN_KEY))
    stop.set()
    for thread in threads:
        thread.join()
    assert not errors, errors[:3]


def test_the_outcome_rule_is_in_the_published_schema(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()["components"]["schemas"]["OutcomeRequest"]
    assert schema["if"] == {"properties": {"converted": {"const": False}}, "required": ["converted"]}
    assert schema["then"] == {"properties": {"converted_at": {"type": "null"}}}
    rejected = client.post("/v1/outcomes", headers=auth(), json={
        "lead_id": "L9", "converted": False, "converted_at": "2025-01-02T03:04:05Z"})
    assert rejected.status_code == 422


def test_the_prediction_log_file_is_private(client: TestClient, settings: ServiceSettings) -> None:
    path = Path(settings.prediction_log_url.removeprefix("sqlite:///"))
    assert path.exists() and path.stat().st_mode & 0o777 == 0o600


def test_a_damaged_active_file_is_named_by_ready_and_repaired_by_the_admin_endpoint(
        settings: ServiceSettings, registry: tuple[Registry, str, str]) -> None:
    reg, v1, v2 = registry
    (reg.root / "ACTIVE").write_text("{truncated")
    with TestClient(create_app(settings)) as client:
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert "ACTIVE is not valid JSON" in ready.json()["detail"]
        assert "leadscore models activate VERSION" in ready.json()["detail"]
        switched = client.post(f"/v1/model/activate/{v2}", headers=auth(ADMIN_KEY))
        assert switched.status_code == 200, switched.text
        assert client.get("/ready").json() == {"status": "ready", "model_version": v2, "detail": None}
    assert reg.active_version() == v2


def test_random_keys_cannot_make_the_server_hash_slowly_for_everyone(
        client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unknown keys need the slow scrypt check (a scrypt key is configured); one client gets a few of
    those per second, then 429 before any hashing, while valid keys keep working."""
    from leadscore.service import auth as auth_module

    calls: list[int] = []
    real = auth_module._scrypt

    def counted(*args: Any, **kwargs: Any) -> bytes:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(auth_module, "_scrypt", counted)
    started = time.monotonic()
    answers = [client.get("/v1/model", headers=auth(f"lsk_random-{i:04d}")) for i in range(30)]
    elapsed = time.monotonic() - started
    codes = [a.status_code for a in answers]
    assert codes[:5] == [401] * 5 and codes.count(429) >= 30 - 5 - int(elapsed) - 1
    assert all(int(a.headers["retry-after"]) >= 1 for a in answers if a.status_code == 429)
    assert len(calls) <= 5 + int(elapsed) + 1  # one scrypt key configured: one hash per check
    assert client.get("/v1/model", headers=auth()).status_code == 200  # a valid key is never throttled


def test_challenger_scores_in_the_shadow_and_is_never_returned(settings: ServiceSettings,
                                                               registry: tuple[Registry, str, str]) -> None:
    """With a challenger marked, every lead is also scored by it (another schema here: v2 expects an
    `employees` field the requests lack) and logged beside the champion's row; answers stay the
    champion's."""
    reg, v1, v2 = registry
    reg.set_challenger(v2)
    sent = _score_and_close(settings, n_single=5, batch_size=20)
    rows = log_rows(settings.prediction_log_url)
    champion = [r for r in rows if r["model_version"] == v1]
    shadow = [r for r in rows if r["model_version"] == v2]
    assert len(champion) == len(shadow) == 25 and len(rows) == 50
    assert all(item["outputs"]["model_version"] == v1 for item in sent)    # answers: the champion's
    _check_log(champion, sent)
    by_key = {(r["request_id"], r["lead_id"]): r for r in shadow}
    for item in sent:
        row = by_key[(item["request_id"], item["outputs"]["lead_id"])]
        assert row["inputs"] == item["inputs"] and row["outputs"]["shadow"] is True
        assert row["outputs"]["champion"] == v1
    frame = pd.DataFrame([item["inputs"] for item in sent])
    challenger = Scorer(reg.load(v2), v2, allow_missing=True)
    expected = challenger.score_frame(frame.drop(columns="lead_id"), reasons=0)
    got = [by_key[(item["request_id"], item["outputs"]["lead_id"])]["probability"] for item in sent]
    np.testing.assert_allclose(got, expected["probability"].to_numpy(), atol=1e-6)
    lead = to_payload(make_flat_leads(1, seed=5).iloc[0].to_dict(), Scorer.load(registry=reg.root).schema,
                      omit_missing=True)
    with TestClient(create_app(settings)) as client:
        assert client.post("/v1/score", json=lead, headers=auth()).status_code == 200
        counted = f'leadscore_shadow_predictions_total{{model_version="{v2}"}} 1.0'
        assert counted in client.get("/metrics").text
        reg.set_challenger(None)                       # unmarked: the workers follow the registry
        deadline = time.monotonic() + 10
        while client.app.state.service.holder.current.shadow is not None:  # type: ignore[attr-defined]
            assert time.monotonic() < deadline, "the challenger was not dropped"
            time.sleep(0.05)
        assert client.post("/v1/score", json=lead, headers=auth()).status_code == 200
    assert len(log_rows(settings.prediction_log_url)) == 50 + 2 + 1
