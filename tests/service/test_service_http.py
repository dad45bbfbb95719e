"""The scoring service as it runs: real uvicorn processes with two workers, real HTTP on loopback.

One server is started through ``leadscore serve`` (the CLI's parser and handler); the shutdown test runs
``python -m uvicorn`` on the app factory directly. Every server is stopped in a fixture finalizer.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from conftest import PG_URL, make_flat_leads
from server_support import SERVE, START_TIMEOUT, Server, free_port, launch, wait_until_served
from service_support import (
    ADMIN_KEY,
    LEAD,
    LIMITED_KEY,
    SCORER_KEY,
    fit_bundles,
    log_rows,
    make_registry,
    to_payload,
    write_keys,
)

from leadscore.artifacts.registry import Registry
from leadscore.data.schema import TableSchema
from leadscore.scoring.scorer import Scorer
from leadscore.service.settings import ENV_SETTINGS, ServiceSettings


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("http")
    bundles = fit_bundles(root / "bundles")
    reg, v1, v2 = make_registry(root / "registry", bundles)
    return {"root": root, "registry": reg, "v1": v1, "v2": v2, "keys": write_keys(root / "keys.yaml"),
            "schema": Scorer.load(v1, registry=reg.root).schema}


@pytest.fixture
def server(deployment: dict[str, Any]) -> Iterator[Server]:
    """``leadscore serve`` with 2 workers; per-key rate limits only (slow-client: 2/s)."""
    port = free_port()
    root = deployment["root"]
    argv = [sys.executable, *SERVE, "--port", str(port), "--workers", "2",
            "--registry", str(deployment["registry"].root), "--keys", str(deployment["keys"]),
            "--rate-limit", "0", "--poll-interval", "0.2", "--max-body-bytes", "20000"]
    srv = launch(argv, root / "serve.log", 2, deployment["registry"].root, port=port)
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def headers(key: str = SCORER_KEY) -> dict[str, str]:
    return {"X-API-Key": key}


def metric_total(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


@dataclass
class Outcome:
    sent: float
    received: float
    status: int | None
    versions: frozenset[str]
    batch: bool
    request_id: str | None = None
    detail: str | None = None


def run_load(url: str, stop: threading.Event, outcomes: list[Outcome], payloads: list[dict[str, Any]],
             connections: int = 4) -> list[threading.Thread]:
    """Client threads (one keep-alive connection each) posting single leads and batches of 5."""
    def worker(index: int) -> None:
        with httpx.Client(base_url=url, headers=headers(), timeout=30) as client:
            i = index
            while not stop.is_set():
                batch = i % 4 == 0
                sent = time.monotonic()
                try:
                    if batch:
                        leads = payloads[i % 50: i % 50 + 5]
                        response = client.post("/v1/score/batch", json={"leads": leads})
                    else:
                        response = client.post("/v1/score", json=payloads[i % len(payloads)])
                except httpx.HTTPError:
                    outcomes.append(Outcome(sent, time.monotonic(), None, frozenset(), batch))
                    time.sleep(0.01)
                    continue
                body = response.json() if response.status_code == 200 else {}
                versions = {body["model_version"]} if body else set()
                if body and batch:
                    versions |= {r["model_version"] for r in body["results"]}
                detail = None
                if not body:  # an error: its JSON detail, or the start of whatever else came back
                    try:
                        detail = str(response.json().get("detail"))
                    except ValueError:
                        detail = f"(not JSON) {response.text[:200]!r}"
                outcomes.append(Outcome(sent, time.monotonic(), response.status_code, frozenset(versions),
                                        batch, body.get("request_id"), detail))
                i += connections

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(connections)]
    for thread in threads:
        thread.start()
    return threads


def lead_payloads(schema: TableSchema, n: int = 120) -> list[dict[str, Any]]:
    rows = make_flat_leads(n, seed=11).to_dict("records")
    return [to_payload(row, schema, omit_missing=True) for row in rows]


def check_logged(rows: list[dict[str, Any]], outcomes: list[Outcome]) -> int:
    """Every acknowledged request has all its leads in the log; returns the number of leads acknowledged."""
    acknowledged = [o for o in outcomes if o.status == 200]
    per_request: dict[str, int] = {}
    for row in rows:
        per_request[row["request_id"]] = per_request.get(row["request_id"], 0) + 1
    missing = [o for o in acknowledged if per_request.get(str(o.request_id)) != (5 if o.batch else 1)]
    assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged requests not (fully) logged"
    leads = sum(5 if o.batch else 1 for o in acknowledged)
    # a request cut off by the shutdown may be logged without its response arriving; nothing else is extra
    unanswered = len(outcomes) - len(acknowledged)
    assert leads <= len(rows) <= leads + 5 * unanswered, (leads, len(rows), unanswered)
    # Refused connections are fine, and so is a request that reached a worker after its prediction log
    # closed for shutdown: it is refused with 503 (not acknowledged, so nothing is lost). Nothing else.
    errors = {(o.status, o.detail) for o in outcomes if o.status not in (200, None)
              and not (o.status == 503 and o.detail == "prediction log is shutting down")}
    assert not errors, errors
    return leads


def sigterm_under_load(srv: Server, payloads: list[dict[str, Any]], answered: int = 60) -> list[Outcome]:
    """Load until ``answered`` requests got 200 (30 s at most), SIGTERM the server mid-load, keep loading
    until it has exited."""
    outcomes: list[Outcome] = []
    stop = threading.Event()
    threads = run_load(srv.url, stop, outcomes, payloads, connections=6)
    try:
        deadline = time.monotonic() + 30
        while sum(o.status == 200 for o in outcomes) < answered and time.monotonic() < deadline:
            time.sleep(0.05)
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.proc.wait(90) == 0, srv.text()[-3000:]
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert srv.text().count("Application shutdown complete") == 2
    assert srv.text().count("is draining: each response now closes its connection") == 2  # both workers
    assert sum(o.status == 200 for o in outcomes) > 20, f"only {len(outcomes)} requests"
    return outcomes


# --- the CLI server: auth, limits, logs, metrics, hot switches, shutdown ---------------------------------

def check_auth_limits_and_no_key_in_logs(server: Server) -> None:
    url = server.url
    assert httpx.post(f"{url}/v1/score", json=LEAD).status_code == 401
    assert httpx.post(f"{url}/v1/score", json=LEAD, headers=headers("lsk_wrong-key-123")).status_code == 401
    assert httpx.post(f"{url}/v1/model/rollback", headers=headers()).status_code == 403
    assert httpx.post(f"{url}/v1/score", json=LEAD, headers=headers(ADMIN_KEY)).status_code == 200
    # body limit, with a Content-Length and chunked (no Content-Length)
    big = json.dumps({**LEAD, "notes": "x" * 30000}).encode()
    assert httpx.post(f"{url}/v1/score", content=big, headers=headers()).status_code == 413
    chunked = httpx.post(f"{url}/v1/score", content=iter([big[:10000], big[10000:]]), headers=headers())
    assert chunked.status_code == 413 and "at most 20000 bytes" in chunked.json()["detail"]
    # slow-client may send 2 requests/s; its bucket is shared by both workers (new connection each time)
    started = time.monotonic()
    codes = [httpx.post(f"{url}/v1/score", json=LEAD, headers=headers(LIMITED_KEY)) for _ in range(8)]
    elapsed = time.monotonic() - started
    granted = sum(r.status_code == 200 for r in codes)
    assert 2 <= granted <= 2 + int(2 * elapsed) + 1, ([r.status_code for r in codes], elapsed)
    assert all(r.status_code in (200, 429) for r in codes)
    assert all(int(r.headers["retry-after"]) >= 1 for r in codes if r.status_code == 429)
    # a key in the query string (not how keys are sent) is refused and masked in the access log
    assert httpx.post(f"{url}/v1/score?api_key={SCORER_KEY}&reasons=1", json=LEAD).status_code == 401
    assert httpx.get(f"{url}/v1/model?token=lsk_query-token-99").status_code == 401
    time.sleep(0.5)
    log = server.text()
    assert '"POST /v1/score HTTP/1.1" 401' in log and '"POST /v1/score HTTP/1.1" 429' in log
    assert '"POST /v1/score?api_key=***&reasons=1 HTTP/1.1" 401' in log
    assert '"GET /v1/model?token=*** HTTP/1.1" 401' in log
    for key in (SCORER_KEY, ADMIN_KEY, LIMITED_KEY, "lsk_wrong-key-123", "lsk_query-token-99"):
        assert key not in log


def check_no_delayed_ack_stalls(server: Server) -> None:
    """Keep-alive requests answer in milliseconds: without TCP_NODELAY on the workers' connections each
    response would wait ~40 ms for the client's delayed ACK."""
    with httpx.Client(base_url=server.url) as client:
        times = []
        for _ in range(30):
            began = time.perf_counter()
            assert client.get("/health").status_code == 200
            times.append(time.perf_counter() - began)
    assert sorted(times)[15] < 0.025, f"median {1000 * sorted(times)[15]:.1f} ms"


def check_metrics_add_up_all_workers(server: Server) -> None:
    before = httpx.get(f"{server.url}/metrics").text
    n = 40
    for _ in range(n):                      # a new connection each: the kernel spreads them over workers
        assert httpx.post(f"{server.url}/v1/score", json=LEAD, headers=headers()).status_code == 200
    batch = httpx.post(f"{server.url}/v1/score/batch", json={"leads": [LEAD] * 7}, headers=headers())
    assert batch.status_code == 200
    reads = [httpx.get(f"{server.url}/metrics").text for _ in range(6)]
    labels = {"endpoint": "/v1/score", "method": "POST", "status": "200"}
    delta = {metric_total(text, "leadscore_http_requests_total", **labels)
             - metric_total(before, "leadscore_http_requests_total", **labels) for text in reads}
    assert delta == {float(n)}, delta       # every scrape, whichever worker answers, sees all requests
    after = reads[-1]
    predictions = metric_total(after, "leadscore_predictions_total") \
        - metric_total(before, "leadscore_predictions_total")
    assert predictions == n + 7
    assert metric_total(after, "leadscore_http_request_duration_seconds_count", **labels) >= n
    assert len(set(re.findall(r'leadscore_model_loaded\{[^}]*pid="(\d+)"', after))) == 2
    assert "leadscore_prediction_log_queue_depth" in after and "leadscore_prediction_score_bucket" in after


def check_hot_switch_under_load(server: Server, deployment: dict[str, Any]) -> None:
    """Admin switch through one worker, then an outside switch (``leadscore models activate``), under load.

    No request fails or mixes versions; once every worker reports the new version (``/metrics``), every
    response carries it.
    """
    v1, v2 = deployment["v1"], deployment["v2"]
    outcomes: list[Outcome] = []
    stop = threading.Event()
    threads = run_load(server.url, stop, outcomes, lead_payloads(deployment["schema"]))
    try:
        time.sleep(1.5)
        switched = httpx.post(f"{server.url}/v1/model/activate/{v2}", headers=headers(ADMIN_KEY), timeout=30)
        assert switched.status_code == 200 and switched.json() == {"active": v2, "previous": v1}
        first_switch = time.monotonic()
        first_settled = wait_until_served(server.url, v2, 2)
        time.sleep(1.5)
        Registry(server.registry).activate(v1)   # another process, through the shared registry
        second_switch = time.monotonic()
        second_settled = wait_until_served(server.url, v1, 2)
        time.sleep(1.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    failed = [o for o in outcomes if o.status != 200]
    assert not failed, f"{len(failed)} of {len(outcomes)} requests failed: {failed[:3]}"
    assert len(outcomes) > 50 and sum(o.batch for o in outcomes) > 5
    assert all(len(o.versions) == 1 and o.versions <= {v1, v2} for o in outcomes)   # never mixed
    before = {v for o in outcomes if o.received < first_switch - 0.5 for v in o.versions}
    after_first = {v for o in outcomes if first_settled < o.sent < second_switch for v in o.versions}
    after_second = {v for o in outcomes if o.sent > second_settled for v in o.versions}
    assert (before, after_first, after_second) == ({v1}, {v2}, {v1})
    assert first_settled - first_switch < 15 and second_settled - second_switch < 15
    log = server.text()
    assert f"serving model {v2} (was {v1})" in log and f"serving model {v1} (was {v2})" in log


def check_monitor_states_on_metrics(server: Server) -> None:
    """What `leadscore monitor check` saves in the store appears on /metrics of every worker (re-read at
    most every 5 s), and the page passes promtool."""
    import shutil
    from datetime import UTC, datetime

    from leadscore.artifacts.paths import default_store_url
    from leadscore.monitoring.alerts import CheckState
    from leadscore.monitoring.exposition import save_states

    engine = sa.create_engine(default_store_url(server.registry))
    save_states(engine, [CheckState("drift", "v9", "source", "2025-05-05", "alert", "PSI 1.5", 1.5)],
                datetime.now(UTC))
    engine.dispose()
    wanted = 'leadscore_monitor_state{check="drift",model_version="v9",subject="source"} 2.0'
    deadline = time.monotonic() + 20
    pages: list[str] = []
    while time.monotonic() < deadline and (len(pages) < 6 or not all(wanted in p for p in pages[-6:])):
        pages.append(httpx.get(f"{server.url}/metrics").text)
        time.sleep(0.2)
    assert all(wanted in p for p in pages[-6:]), pages[-1][-2000:]
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: `make system` installs Debian's prometheus package"
    check = subprocess.run([promtool, "check", "metrics"], input=pages[-1].encode(), capture_output=True)
    assert check.returncode == 0, check.stderr.decode()


def test_cli_server_two_workers(server: Server, deployment: dict[str, Any]) -> None:
    """``leadscore serve --workers 2``: one server (it starts slowly) for every check, then SIGTERM."""
    check_auth_limits_and_no_key_in_logs(server)
    check_no_delayed_ack_stalls(server)
    check_metrics_add_up_all_workers(server)
    check_monitor_states_on_metrics(server)
    check_hot_switch_under_load(server, deployment)
    outcomes = sigterm_under_load(server, lead_payloads(deployment["schema"]))
    db = deployment["registry"].root.parent / "predictions.db"   # the default log, next to the registry
    check_logged([r for r in log_rows(f"sqlite:///{db}") if r["request_id"] in
                  {o.request_id for o in outcomes}], outcomes)


# --- graceful shutdown of plain uvicorn, nothing flushed before ----------------------------------------

@pytest.fixture
def log_url(deployment: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """The PostgreSQL test server (a unique table, dropped afterwards), else a SQLite file."""
    table = f"predlog_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError:
        yield f"sqlite:///{deployment['root'] / f'{table}.db'}", table
        return
    yield PG_URL, table
    with engine.begin() as conn:
        for name in (table, f"outcomes_{table}"):
            conn.execute(sa.text(f'DROP TABLE IF EXISTS "{name}"'))
    engine.dispose()


@pytest.mark.slow
def test_uvicorn_sigterm_under_load_flushes_every_acknowledged_prediction(
        deployment: dict[str, Any], log_url: tuple[str, str], tmp_path: Path) -> None:
    """``python -m uvicorn`` (2 workers) gets SIGTERM mid-load; every acknowledged lead is logged.

    The log writer would flush only every 60 s here, so no row reaches the table before the shutdown:
    they are all there because the app's lifespan shutdown writes what is buffered.
    """
    url, table = log_url
    port = free_port()
    (tmp_path / "metrics").mkdir()
    settings = ServiceSettings(registry=deployment["registry"].root, keys_file=deployment["keys"],
                               rate_limit=0, log_url=url, log_table=table, outcomes_table=f"outcomes_{table}",
                               log_flush_interval=60.0, log_batch_size=100_000, state_dir=tmp_path)
    env = {ENV_SETTINGS: settings.to_json(), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    argv = [sys.executable, "-m", "uvicorn", "leadscore.service.app:create_app_from_env", "--factory",
            "--workers", "2", "--port", str(port), "--timeout-graceful-shutdown", "30"]
    srv = launch(argv, tmp_path / "uvicorn.log", 2, settings.registry, env=env, port=port)
    try:
        srv.wait_ready()
        before = log_rows(url, table)
        outcomes = sigterm_under_load(srv, lead_payloads(deployment["schema"]), answered=100)
    finally:
        srv.stop()
    assert before == []
    leads = check_logged(log_rows(url, table), outcomes)
    assert leads > 50


def _running(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its new parent to reap it counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def test_workers_exit_when_the_supervisor_is_killed(deployment: dict[str, Any], tmp_path: Path) -> None:
    """kill -9 of `leadscore serve` must not leave workers serving unsupervised on the port."""
    port = free_port()
    argv = [sys.executable, *SERVE, "--port", str(port), "--workers", "2",
            "--registry", str(deployment["registry"].root), "--keys", str(deployment["keys"]),
            "--log-db", str(tmp_path / "log.db")]
    srv = launch(argv, tmp_path / "serve.log", 2, deployment["registry"].root, port=port)
    try:
        srv.wait_ready()
        metrics = httpx.get(f"{srv.url}/metrics", timeout=5).text
        workers = {int(p) for p in re.findall(r'leadscore_model_loaded\{[^}]*pid="(\d+)"', metrics)}
        assert len(workers) == 2 and srv.proc.pid not in workers
        os.kill(srv.proc.pid, signal.SIGKILL)
        srv.proc.wait(10)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(_running(pid) for pid in workers):
            time.sleep(0.1)
        assert not any(_running(pid) for pid in workers), srv.text()[-2000:]
        assert "supervisor" in srv.text() and "shuts down" in srv.text()
        with socket.socket() as sock:  # the port is free for the next server
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(srv.proc.pid, signal.SIGKILL)


# --- kill -9 under load: every acknowledged prediction is in the log after a restart -------------------

@pytest.fixture(params=["sqlite", "postgresql"])
def crash_log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A prediction-log URL and a unique table: a SQLite file, or a PostgreSQL database of this test
    alone (so the store's other tables, such as outcomes, meet nothing left by other runs)."""
    from conftest import fresh_database

    table = f"predlog_{uuid.uuid4().hex[:10]}"
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'log.db'}", table
        return
    with fresh_database(request.getfixturevalue("pg_url")) as url:
        yield url, table


def _worker_pids(url: str) -> set[int]:
    metrics = httpx.get(f"{url}/metrics", timeout=5).text
    return {int(p) for p in re.findall(r'leadscore_model_loaded\{[^}]*pid="(\d+)"[^}]*\} 1\.0', metrics)}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def busiest(pids: set[int], seconds: float = 1.0) -> int:
    """The process that used the most CPU over the next ``seconds``: the worker serving the clients."""
    start = {pid: cpu_seconds(pid) for pid in pids}
    time.sleep(seconds)
    return max(pids, key=lambda pid: cpu_seconds(pid) - start[pid])


@pytest.mark.slow
@pytest.mark.parametrize("victim", ["worker", "server"])
def test_kill_9_under_load_loses_no_acknowledged_prediction(
        deployment: dict[str, Any], crash_log: tuple[str, str], tmp_path: Path, victim: str) -> None:
    """kill -9 of one worker (uvicorn starts a new one) or of the whole server (then started again)
    while 6 clients score: after a graceful stop every answered lead is in the log, exactly once."""
    url, table = crash_log
    port = free_port()
    argv = [sys.executable, *SERVE, "--port", str(port), "--workers", "2", "--rate-limit", "0",
            "--registry", str(deployment["registry"].root), "--keys", str(deployment["keys"]),
            "--log-db", url, "--log-table", table, "--no-access-log"]
    srv = launch(argv, tmp_path / "serve.log", 2, deployment["registry"].root, port=port)
    outcomes: list[Outcome] = []
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        srv.wait_ready()
        threads = run_load(srv.url, stop, outcomes, lead_payloads(deployment["schema"]), connections=6)
        deadline = time.monotonic() + 30
        while sum(o.status == 200 for o in outcomes) < 300 and time.monotonic() < deadline:
            time.sleep(0.02)
        if victim == "worker":
            before = _worker_pids(srv.url)
            os.kill(busiest(before), signal.SIGKILL)
            deadline = time.monotonic() + START_TIMEOUT
            while not _worker_pids(srv.url) - before and time.monotonic() < deadline:
                time.sleep(0.2)                            # until uvicorn's new worker serves
            assert _worker_pids(srv.url) - before, srv.text()[-3000:]
            answered = sum(o.status == 200 for o in outcomes)
            while sum(o.status == 200 for o in outcomes) < answered + 100 and time.monotonic() < deadline:
                time.sleep(0.02)
        else:
            os.killpg(srv.proc.pid, signal.SIGKILL)
            srv.proc.wait(10)
            time.sleep(0.5)
            srv = launch(argv, tmp_path / "restart.log", 2, deployment["registry"].root, port=port)
            srv.wait_ready()
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        srv.stop()
    rows = log_rows(url, table)
    leads = check_logged(rows, outcomes)
    assert leads > 300
    assert "adopted" in srv.text() and "to replay" in srv.text()   # the journal was shipped on restart
