"""`leadscore retrain` on a small demo CRM: first model, triggers, the gate, the lock, the history."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from conftest import REPO

from leadscore.artifacts.paths import default_store_url
from leadscore.artifacts.registry import Registry
from leadscore.cli.main import main
from leadscore.lifecycle.retrain import retrain_lock
from leadscore.monitoring.alerts import CheckState
from leadscore.monitoring.exposition import save_states


@pytest.fixture(scope="module")
def crm(tmp_path_factory):
    root = tmp_path_factory.mktemp("retrain")
    assert main(["demo", "--out", str(root / "data"), "--n-leads", "4000", "--months", "20"]) == 0
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["model_comparison"].update(candidates=["logistic"], cv_folds=3, time_budget_seconds=0,
                                      ensemble=False, calibration=["platt"])
    params["segments"]["min_positives"] = 10_000        # no segment models: fast
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


def run(crm: Path, registry: Path, *extra: str) -> tuple[int, dict]:
    argv = ["retrain", "--crm", str(crm / "data/raw"), "--registry", str(registry),
            "--params", str(crm / "params.yaml"), "--json", *extra]
    proc = subprocess.run([sys.executable, "-m", "leadscore.cli", *argv], capture_output=True, text=True)
    assert proc.returncode in (0, 3), proc.stderr[-2000:]
    return proc.returncode, json.loads(proc.stdout)


def test_retrain_cycle_triggers_gate_and_history(crm, tmp_path):
    registry = tmp_path / "registry"
    # no model yet: the first cycle trains on data up to March 2025 and activates it
    status, first = run(crm, registry, "--as-of", "2025-03-31")
    assert status == 0 and first["ran"] and first["action"] == "promoted (no active model)"
    reg = Registry(registry)
    assert reg.active_version() == first["version"]
    assert first["data"]["held_back"][1] < "2025-01-01"   # closed windows only: 90 days + 7 before as-of
    # same data again, if needed: no trigger fires, nothing is trained
    status, again = run(crm, registry, "--as-of", "2025-03-31", "--if-needed")
    assert status == 0 and not again["ran"]
    assert {t["name"]: t["fired"] for t in again["triggers"]} == {"new_labels": False, "max_age": False,
                                                                  "alert": False}
    # five more months of outcomes: the new labels fire, a challenger is trained and gated
    status, later = run(crm, registry, "--if-needed")
    fired = [t["name"] for t in later["triggers"] if t["fired"]]
    assert "new_labels" in fired and later["ran"] and later["decision"] in ("promote", "keep", "reject")
    assert status == (0 if later["action"].startswith("promoted") else 3)
    assert later["figures"]["leads"] == later["data"]["holdout_rows"]
    events = [e["event"] for e in reg.events()]
    assert events.count("retrain") == 2 and events.count("gate") == 1
    gate = next(e for e in reg.events() if e["event"] == "gate")
    assert gate["actor"] == "retrain" and gate["challenger"] == later["version"]


def test_alert_trigger_and_the_lock(crm, tmp_path):
    registry = tmp_path / "registry"
    run(crm, registry)
    reg = Registry(registry)
    active = reg.active_version()
    engine = sa.create_engine(default_store_url(registry))
    save_states(engine, [CheckState("drift", str(active), "source", "2025-05-05", "alert",
                                    "PSI 1.5; 20% never seen", 1.5)], datetime.now(UTC))
    engine.dispose()
    with retrain_lock(reg):          # another cycle is running: this one says so and does nothing
        status, busy = run(crm, registry, "--if-needed")
    assert status == 0 and busy["busy"] and "another retrain is running (pid" in busy["reason"]
    status, cycle = run(crm, registry, "--if-needed")
    alert = next(t for t in cycle["triggers"] if t["name"] == "alert")
    assert alert["fired"] and "drift source: PSI 1.5" in alert["reason"] and cycle["ran"]


def test_a_killed_cycle_leaves_no_stale_lock(tmp_path):
    import signal
    import time

    code = ("import sys, time\nfrom leadscore.artifacts.registry import Registry\n"
            "from leadscore.lifecycle.retrain import retrain_lock\n"
            "with retrain_lock(Registry(sys.argv[1])):\n"
            "    print('locked', flush=True)\n    time.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        from leadscore.lifecycle.retrain import RetrainBusy

        with pytest.raises(RetrainBusy, match=f"pid {proc.pid} since"), retrain_lock(Registry(tmp_path)):
            pass
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        started = time.monotonic()
        with retrain_lock(Registry(tmp_path)):   # the kernel released the dead holder's lock
            assert time.monotonic() - started < 1
    finally:
        proc.kill()
