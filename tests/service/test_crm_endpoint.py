"""POST /v1/leads/{lead_id}/score over real HTTP: the lead read from the CRM database (SQLite and
PostgreSQL), scored as batch scoring scores it, logged, and written back."""

from __future__ import annotations

import sys

import httpx
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from crm_support import AS_OF, add_activity, build_crm_model, current_scores, write_crm_db
from server_support import SERVE, free_port, launch
from service_support import write_keys

from leadscore.core.config import load_params
from leadscore.data.crm import load_crm, open_lead_rows
from leadscore.scoring.scorer import Scorer


@pytest.fixture(scope="module")
def crm_model(tmp_path_factory):
    return build_crm_model(tmp_path_factory.mktemp("crm-model"))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request, crm_model, tmp_path_factory):
    """`leadscore serve --crm URL --crm-as-of` on the demo CRM in a database, one worker."""
    folder = tmp_path_factory.mktemp(f"serve-{request.param}")
    if request.param == "sqlite":
        url, cleanup = f"sqlite:///{folder / 'crm.db'}", None
    else:
        from conftest import fresh_database

        cleanup = fresh_database(request.getfixturevalue("pg_url"))
        url = cleanup.__enter__()
    write_crm_db(crm_model, url)
    keys = write_keys(folder / "keys.yaml")
    port = free_port()
    srv = launch([sys.executable, *SERVE, "--registry", str(crm_model.registry), "--keys", str(keys),
                  "--port", str(port), "--workers", "1", "--no-warm-dashboard", "--crm", url,
                  "--crm-as-of", AS_OF, "--log-db", f"sqlite:///{folder / 'log.db'}"],
                 folder / "serve.log", 1, crm_model.registry, port=port)
    srv.extra.update(crm=url, log=f"sqlite:///{folder / 'log.db'}")
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()
        if cleanup is not None:
            cleanup.__exit__(None, None, None)


@pytest.fixture(scope="module")
def open_rows(crm_model):
    rows, _ = open_lead_rows(load_crm(crm_model.raw), load_params(crm_model.params),
                             as_of=pd.Timestamp(AS_OF))
    return rows


def _post(server, lead_id: str, **params):
    from service_support import SCORER_KEY

    return httpx.post(f"{server.url}/v1/leads/{lead_id}/score", params=params,
                      headers={"X-API-Key": SCORER_KEY}, timeout=30)


def test_an_open_lead_scores_as_in_batch_and_is_written_back(server, crm_model, open_rows):
    batch = Scorer.load(registry=crm_model.registry).score_frame(open_rows, reasons=3).set_index("lead_id")
    for lead in open_rows["lead_id"].astype(str).sample(5, random_state=1):
        answer = _post(server, lead)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["lead_id"] == lead and body["written_back"] is True and body["note"] is None
        np.testing.assert_allclose(body["probability"], batch.loc[lead, "probability"], rtol=0, atol=1e-9)
        assert body["score"] == batch.loc[lead, "score"] and body["tier"] == batch.loc[lead, "tier"]
        stored = current_scores(server.extra["crm"]).loc[lead]
        assert stored["score"] == body["score"] and stored["model_version"] == body["model_version"]


def test_the_answer_follows_new_activity(server, open_rows):
    young = open_rows[open_rows["created_at"] > pd.Timestamp(AS_OF) - pd.Timedelta(days=6)]
    lead = str(young["lead_id"].iloc[-1])
    before = _post(server, lead).json()
    add_activity(server.extra["crm"], lead, "quote_request", pd.Timestamp(AS_OF) - pd.Timedelta(hours=3))
    after = _post(server, lead).json()
    assert after["probability"] > before["probability"]


def test_every_answer_is_in_the_prediction_log(server, open_rows):
    lead = str(open_rows["lead_id"].iloc[0])
    rid = _post(server, lead).json()["request_id"]
    engine = sa.create_engine(server.extra["log"])
    deadline = pd.Timestamp.now() + pd.Timedelta(seconds=10)
    rows = []
    while not rows and pd.Timestamp.now() < deadline:  # shipped from the journal in the background
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT lead_id FROM prediction_log WHERE request_id = :r"),
                                {"r": rid}).all()
    engine.dispose()
    assert [r[0] for r in rows] == [lead]


def test_unknown_and_converted_leads(server, crm_model):
    assert _post(server, "NO-SUCH-LEAD").status_code == 404
    outcomes = load_crm(crm_model.raw)["outcomes"]
    converted = outcomes[outcomes["converted"] == 1]
    converted = converted[pd.to_datetime(converted["converted_at"]) < pd.Timestamp(AS_OF)]
    answer = _post(server, str(converted["lead_id"].iloc[0]))
    assert answer.status_code == 200 and "already converted" in answer.json()["note"]


def test_without_a_crm_database_the_endpoint_says_how_to_get_one(tmp_path, crm_model):
    from fastapi.testclient import TestClient
    from service_support import SCORER_KEY

    from leadscore.service.app import create_app
    from leadscore.service.settings import ServiceSettings

    settings = ServiceSettings(registry=crm_model.registry, keys_file=write_keys(tmp_path / "keys.yaml"),
                               log_url=f"sqlite:///{tmp_path / 'log.db'}", journal_dir=tmp_path / "journal")
    with TestClient(create_app(settings)) as client:
        answer = client.post("/v1/leads/L0000001/score", headers={"X-API-Key": SCORER_KEY})
    assert answer.status_code == 409 and "--crm URL" in answer.json()["detail"]
