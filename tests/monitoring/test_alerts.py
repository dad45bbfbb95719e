"""Alert states: thresholds by hand, the store table (SQLite and PostgreSQL), the Prometheus text format
checked by promtool, and the webhook against a real local HTTP receiver (retries, failures)."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families
from webhook_support import Receiver

from leadscore.core.config import MonitoringParams
from leadscore.monitoring.alerts import (
    CheckState,
    drift_states,
    estimate_states,
    overall_state,
    performance_states,
    raised,
)
from leadscore.monitoring.exposition import load_states, save_states, write_textfile
from leadscore.monitoring.webhook import post_json, slack_message

SETTINGS = MonitoringParams(auc_drop_warn=0.05, auc_drop_alert=0.10)
STATES = [CheckState("drift", "v1", "source", "2025-05-05", "alert", "PSI 1.478; 19.0% unseen", 1.478),
          CheckState("drift", "v1", "budget", "2025-05-05", "ok", "PSI 0.012", 0.012),
          CheckState("performance", "v1", "roc_auc", "2025-03-03", "warn", "ROC-AUC 0.74", 0.74),
          CheckState("score_drift", "v1", "score", "2025-05-05", "ok", "PSI 0.02", None)]


def _perf(auc: float) -> pd.DataFrame:
    return pd.DataFrame([{"model_version": "v1", "period": "2025-03-03", "roc_auc": 0.9, "roc_auc_low": 0.8,
                          "roc_auc_high": 0.95, "labelled": 500, "open": 0},
                         {"model_version": "v1", "period": "2025-03-10", "roc_auc": auc,
                          "roc_auc_low": auc - .05, "roc_auc_high": auc + .05, "labelled": 500, "open": 0},
                         {"model_version": "v1", "period": "2025-03-17", "roc_auc": 0.5, "roc_auc_low": 0.4,
                          "roc_auc_high": 0.6, "labelled": 300, "open": 200}])  # still maturing: not judged


@pytest.mark.parametrize(("auc", "state"), [(0.79, "ok"), (0.761, "ok"), (0.759, "warn"), (0.721, "warn"),
                                            (0.719, "alert")])
def test_realized_auc_drop_states_by_hand(auc: float, state: str) -> None:
    # baseline 0.80: warn from a 5% drop (0.76), alert from a 10% drop (0.72); the latest period counts
    [got] = performance_states(_perf(auc), {"v1": 0.80}, SETTINGS)
    assert (got.state, got.period, got.value) == (state, "2025-03-10", auc)


def test_estimated_auc_alerts_only_when_its_whole_interval_is_below() -> None:
    def table(est: float, high: float) -> pd.DataFrame:
        return pd.DataFrame([{"model_version": "v1", "period": "2025-06-02", "open": 300, "est_roc_auc": est,
                              "est_roc_auc_low": est - 0.05, "est_roc_auc_high": high}])

    assert estimate_states(table(0.70, 0.75), {"v1": 0.80}, SETTINGS)[0].state == "warn"
    assert estimate_states(table(0.66, 0.71), {"v1": 0.80}, SETTINGS)[0].state == "alert"
    assert estimate_states(table(0.78, 0.83), {"v1": 0.80}, SETTINGS)[0].state == "ok"
    assert estimate_states(table(0.66, 0.71), {"v1": None}, SETTINGS) == []


def test_drift_states_judge_the_latest_period_with_enough_leads() -> None:
    def period(name: str, score_state: str, feature_state: str) -> dict:
        return {"model_version": "v1", "period": name,
                "score": {"state": score_state, "reason": "r", "psi": 0.01},
                "features": [{"feature": "source", "state": feature_state, "reason": "r", "psi": 0.3}]}

    states = drift_states([period("2025-05-05", "ok", "alert"), period("2025-05-12", "too few", "too few"),
                           period("2025-04-28", "ok", "ok")])
    assert {(s.check, s.period, s.state) for s in states} == {("drift", "2025-05-05", "alert"),
                                                              ("score_drift", "2025-05-05", "ok")}
    assert overall_state(states) == "alert" and overall_state([]) == "ok"
    assert [s.subject for s in raised(STATES)] == ["source", "roc_auc"]


def _roundtrip(url: str, table: str) -> None:
    engine = sa.create_engine(url)
    try:
        when = datetime(2025, 6, 1, 12, tzinfo=UTC)
        save_states(engine, STATES, when, table)
        save_states(engine, STATES[:2], when, table)   # replaced as a whole
        states, checked = load_states(engine, table)
        assert sorted(states, key=lambda s: s.subject) == sorted(STATES[:2], key=lambda s: s.subject)
        assert checked == when
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP TABLE IF EXISTS "{table}"'))
        engine.dispose()


def test_states_table_roundtrip_sqlite(tmp_path: Path) -> None:
    assert load_states(sa.create_engine(f"sqlite:///{tmp_path / 'none.db'}")) == ([], None)
    _roundtrip(f"sqlite:///{tmp_path / 'store.db'}", "monitor_states")


def test_states_table_roundtrip_postgresql(pg_url: str) -> None:
    _roundtrip(pg_url, f"monitor_states_{uuid.uuid4().hex[:8]}")


def test_prometheus_textfile_passes_promtool_and_holds_the_states(tmp_path: Path) -> None:
    path = write_textfile(tmp_path / "leadscore.prom", STATES, datetime(2025, 6, 1, tzinfo=UTC))
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: `make system` installs Debian's prometheus package"
    check = subprocess.run([promtool, "check", "metrics"], input=path.read_bytes(), capture_output=True)
    assert check.returncode == 0, check.stderr.decode()
    samples = {(s.name, s.labels.get("subject")): s.value
               for family in text_string_to_metric_families(path.read_text()) for s in family.samples}
    assert samples[("leadscore_monitor_state", "source")] == 2
    assert samples[("leadscore_monitor_state", "roc_auc")] == 1
    assert samples[("leadscore_monitor_state", "budget")] == 0
    assert samples[("leadscore_monitor_value", "source")] == pytest.approx(1.478)
    assert ("leadscore_monitor_value", "score") not in samples  # no figure, no sample
    assert samples[("leadscore_monitor_checked_timestamp_seconds", None)] == datetime(2025, 6, 1,
                                                                                       tzinfo=UTC).timestamp()
    assert not list(tmp_path.glob("*.prom.*"))  # written through a temporary file, renamed


@pytest.fixture
def receiver_factory() -> Iterator:
    made: list[Receiver] = []

    def make(statuses: list[int]) -> Receiver:
        made.append(Receiver(statuses))
        return made[-1]

    yield make
    for r in made:
        r.close()


def test_webhook_retries_transient_failures_then_delivers(receiver_factory) -> None:
    receiver = receiver_factory([503, 429])
    waits: list[float] = []
    message = slack_message(raised(STATES))
    delivery = post_json(receiver.url, message, attempts=4, backoff=0.5, sleep=waits.append)
    assert (delivery.delivered, delivery.attempts, delivery.status) == (True, 3, 200)
    assert waits == [0.5, 1.0]                                  # exponential backoff
    assert len(receiver.bodies) == 3 and receiver.bodies[-1] == message
    assert "1 alert(s), 1 warning(s)" in message["text"] and "`source`" in message["text"]
    assert message["blocks"][0]["type"] == "header"


def test_webhook_failures_are_reported_not_raised(receiver_factory) -> None:
    always = receiver_factory([500] * 10)
    failed = post_json(always.url, {"text": "x"}, attempts=3, sleep=lambda s: None)
    assert (failed.delivered, failed.attempts, failed.error) == (False, 3, "HTTP 500")
    refused = receiver_factory([400])
    once = post_json(refused.url, {"text": "x"}, attempts=3, sleep=lambda s: None)
    assert (once.delivered, once.attempts, once.status) == (False, 1, 400)   # not retried
    closed = receiver_factory([])
    url = closed.url
    closed.close()
    gone = post_json(url, {"text": "x"}, attempts=2, timeout=1, sleep=lambda s: None)
    assert not gone.delivered and gone.attempts == 2 and "ConnectError" in (gone.error or "")
