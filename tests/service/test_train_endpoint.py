"""`POST /v1/model/train` and `GET /v1/model/train/{job}`: admin only, one job at a time, a real
retraining cycle in its own process, its result, log tail and metrics."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from lifecycle_support import make_crm_project, register_bad_model
from service_support import ADMIN_KEY, SCORER_KEY, write_keys

from leadscore.artifacts.registry import Registry
from leadscore.service.app import create_app
from leadscore.service.settings import ServiceSettings


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_crm_project(tmp_path_factory.mktemp("train-api"))


@pytest.fixture
def client(project: Path, tmp_path: Path) -> Iterator[tuple[TestClient, Registry]]:
    registry = tmp_path / "registry"
    register_bad_model(project, registry)
    settings = ServiceSettings(registry=registry, keys_file=write_keys(tmp_path / "keys.yaml"), rate_limit=0,
                               poll_interval=0.1, train_crm=project / "data/raw",
                               train_params=project / "params.yaml")
    with TestClient(create_app(settings)) as test_client:
        yield test_client, Registry(registry)


def wait_done(client: TestClient, job: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        state = client.get(f"/v1/model/train/{job}", headers={"X-API-Key": ADMIN_KEY}).json()
        if state["state"] != "running":
            return state
        assert time.monotonic() < deadline, state
        time.sleep(0.5)


def test_train_job_admin_only_one_at_a_time_then_promotes(client: tuple[TestClient, Registry]) -> None:
    api, registry = client
    bad = registry.active_version()
    assert api.post("/v1/model/train", headers={"X-API-Key": SCORER_KEY}).status_code == 403
    started = api.post("/v1/model/train", headers={"X-API-Key": ADMIN_KEY})
    assert started.status_code == 202 and started.json()["state"] == "running"
    job = started.json()["job"]
    again = api.post("/v1/model/train", headers={"X-API-Key": ADMIN_KEY})
    assert again.status_code == 409 and f"training job {job} is running" in again.json()["detail"]
    done = wait_done(api, job)
    assert done["state"] == "succeeded", done
    result = done["result"]
    assert result["ran"] and result["decision"] == "promote" and result["action"] == "promoted"
    assert result["figures"]["challenger_roc_auc"] > result["figures"]["champion_roc_auc"] + 0.1
    assert registry.active_version() == result["version"] != bad
    assert isinstance(done["log_tail"], list) and done["seconds"] > 0
    deadline = time.monotonic() + 10   # the workers follow the registry to the new model
    while api.get("/ready").json()["model_version"] != result["version"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    metrics = api.get("/metrics").text
    assert 'leadscore_training_runs_total{status="succeeded"} 1.0' in metrics
    assert 'leadscore_gate_decisions_total{decision="promote"} 1.0' in metrics
    assert "leadscore_training_last_duration_seconds" in metrics
    for missing in ("20990101000000-abcdef", "../../etc"):
        assert api.get(f"/v1/model/train/{missing}", headers={"X-API-Key": ADMIN_KEY}).status_code == 404


def test_train_endpoint_needs_its_data(tmp_path: Path, project: Path) -> None:
    registry = tmp_path / "registry"
    register_bad_model(project, registry)
    settings = ServiceSettings(registry=registry, keys_file=write_keys(tmp_path / "keys.yaml"))
    with TestClient(create_app(settings)) as api:
        answer = api.post("/v1/model/train", headers={"X-API-Key": ADMIN_KEY})
        assert answer.status_code == 409 and "--train-crm DIR" in answer.json()["detail"]


@pytest.mark.slow
def test_serving_is_uninterrupted_while_a_job_trains_and_its_model_activates(project: Path,
                                                                              tmp_path: Path) -> None:
    """`leadscore serve --workers 2 --train-crm DIR` under steady load: a job trains, passes the gate and
    is activated; every request is answered 200, by the old model and then by the new one, never mixed."""
    import json
    import os
    import signal
    import socket
    import subprocess
    import sys
    import threading

    import httpx
    from service_support import to_payload

    from leadscore.core.config import load_params
    from leadscore.data.crm import load_crm, open_lead_rows
    from leadscore.scoring.scorer import Scorer

    registry = tmp_path / "registry"
    bad = register_bad_model(project, registry)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "serve.log").open("wb")
    argv = [sys.executable, "-m", "leadscore.cli", "serve", "--port", str(port), "--workers", "2",
            "--registry", str(registry), "--keys", str(write_keys(tmp_path / "keys.yaml")),
            "--rate-limit", "0", "--poll-interval", "0.2", "--train-crm", str(project / "data/raw"),
            "--train-params", str(project / "params.yaml")]
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 150
        while True:
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.3)
        rows, _ = open_lead_rows(load_crm(project / "data/raw"), load_params(project / "params.yaml"))
        schema = Scorer.load(bad, registry=registry).schema
        payloads = [json.loads(json.dumps(to_payload(r, schema, omit_missing=True), default=str))
                    for r in rows.head(50).to_dict("records")]
        answers: list[tuple[float, int, str | None]] = []
        stop = threading.Event()

        def load(index: int) -> None:
            with httpx.Client(base_url=url, headers={"X-API-Key": SCORER_KEY}, timeout=30) as client:
                i = index
                while not stop.is_set():
                    try:
                        response = client.post("/v1/score", json=payloads[i % len(payloads)])
                    except httpx.HTTPError as exc:   # counted as a failure, never a silent stop
                        answers.append((time.monotonic(), -1, repr(exc)))
                        continue
                    version = response.json().get("model_version") if response.status_code == 200 else None
                    answers.append((time.monotonic(), response.status_code, version))
                    i += 3
                    time.sleep(0.01)

        threads = [threading.Thread(target=load, args=(k,), daemon=True) for k in range(3)]
        for thread in threads:
            thread.start()
        admin = {"X-API-Key": ADMIN_KEY}
        job = httpx.post(f"{url}/v1/model/train", headers=admin, timeout=30).json()["job"]
        deadline = time.monotonic() + 240
        while (state := httpx.get(f"{url}/v1/model/train/{job}", headers=admin).json())["state"] == "running":
            assert time.monotonic() < deadline
            time.sleep(0.5)
        new = state["result"]["version"]
        assert state["state"] == "succeeded" and state["result"]["action"] == "promoted", state
        switched = time.monotonic()
        while not any(v == new and t > switched for t, _, v in answers[-20:]):
            assert time.monotonic() - switched < 30, "the workers did not switch to the new model"
            time.sleep(0.2)
        time.sleep(2.0)   # every worker on the new model by now (poll interval 0.2 s)
        stop.set()
        for thread in threads:
            thread.join(30)
        assert len(answers) > 100 and all(status == 200 for _, status, _ in answers), \
            {status for _, status, _ in answers}
        assert {v for _, _, v in answers} == {bad, new}
        assert all(v == new for t, _, v in answers if t > switched + 1.5)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)
        log.close()
