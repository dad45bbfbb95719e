"""The files in ``deploy/``: the Prometheus rules pass ``promtool check rules`` and their unit tests, every
dashboard query parses, the dashboard is well formed, and every metric either names is one a running
service exports on ``/metrics`` (its own, the monitoring states and the training figures)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from conftest import make_flat_leads
from prometheus_client.parser import text_string_to_metric_families

from leadscore.artifacts.bundle import save_bundle
from leadscore.artifacts.registry import Registry
from leadscore.experiments.store import ExperimentStore
from leadscore.monitoring.alerts import CheckState
from leadscore.monitoring.exposition import save_states
from leadscore.service.app import create_app
from leadscore.service.settings import ServiceSettings
from leadscore.service.train_jobs import JOBS_FOLDER
from leadscore.training.fit import fit_table

with warnings.catch_warnings():  # starlette asks for httpx2, which is not installed
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from service_support import LEAD, SCORER_KEY, TARGET, write_keys

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "leadscore-rules.yml"
RULE_TESTS = DEPLOY / "prometheus" / "leadscore-rules.test.yml"
DASHBOARD = DEPLOY / "grafana" / "leadscore-dashboard.json"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed: "
                                    "scripts/setup-system.sh installs Debian's prometheus package")
RULES_POINTS = [{"feature": "source", "op": "in", "value": ["referral"], "points": 30, "label": "Referral"}]
ALERTS = {"LeadscoreHighLatency", "LeadscoreHighErrorRate", "LeadscorePredictionLogBacklog",
          "LeadscoreNoPredictions", "LeadscoreTrainingFailed", "LeadscorePerformanceDrop",
          "LeadscoreEstimatedPerformanceDrop", "LeadscoreFeatureDrift", "LeadscoreMonitoringStale"}
STATES = [CheckState("drift", "v1", "source", "2025-05-05", "alert", "PSI 0.310", 0.31),
          CheckState("score_drift", "v1", "score", "2025-05-05", "ok", "PSI 0.020", 0.02),
          CheckState("performance", "v1", "roc_auc", "2025-04", "alert", "realized ROC-AUC 0.62", 0.62),
          CheckState("estimated_performance", "v1", "roc_auc", "2025-05", "warn", "estimated 0.67", 0.67)]


# --- metric names in PromQL -----------------------------------------------------------------------------

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENTIFIER = re.compile(r"(?<![\w:.$])[A-Za-z_:][\w:]*")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
             "group_right", "inf", "nan", "atan2"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers that are not functions (followed by
    ``(``), keywords, label names inside matchers or grouping clauses, durations or strings."""
    text = _GROUPING.sub(" ", _RANGES.sub(" ", _MATCHERS.sub("{}", _STRINGS.sub('""', expr))))
    names = set()
    for match in _IDENTIFIER.finditer(text):
        if match.group().lower() in _KEYWORDS or text[match.end():].lstrip().startswith("("):
            continue
        names.add(match.group())
    return names


def test_metric_names_finds_every_metric_and_nothing_else() -> None:
    expr = ('histogram_quantile(0.99, sum by (le, endpoint) (rate(a_bucket{endpoint=~"/v1/score|x"}'
            '[$__rate_interval]))) > 2 and on (job) b_total offset 5m unless time() - max without (pid) (c) '
            '> 6 * 3600 or rate(job:d:rate5m[5m:1m]) / sum(e{kind="by (x)"} @ 1e9)')
    assert metric_names(expr) == {"a_bucket", "b_total", "c", "job:d:rate5m", "e"}


# --- the files ------------------------------------------------------------------------------------------

def load_rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that shows data, also those inside collapsed rows."""
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def dashboard_queries(dashboard: dict[str, Any]) -> dict[str, str]:
    """Each panel target's expression by ``panel id/refId``."""
    return {f"{panel['id']}/{target['refId']}": target["expr"]
            for panel in panels(dashboard) for target in panel["targets"]}


def variable_metrics(dashboard: dict[str, Any]) -> set[str]:
    """The metrics the template variables' ``label_values(metric, label)`` queries read."""
    found = set()
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
            found |= set(re.findall(r"label_values\(\s*([A-Za-z_:][\w:]*)\s*,", query))
    return found


def run_promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, cwd=cwd, timeout=60)


@needs_promtool
def test_rules_pass_promtool_check() -> None:
    check = run_promtool("check", "rules", str(RULES))
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS" in check.stdout


@needs_promtool
def test_rules_unit_tests_pass() -> None:
    """The alerts fire on a service in trouble and stay quiet on a healthy one (leadscore-rules.test.yml)."""
    check = run_promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert check.returncode == 0, check.stdout + check.stderr


def test_every_alert_is_labelled_documented_and_unit_tested() -> None:
    alerts = {rule["alert"]: rule for rule in load_rules() if "alert" in rule}
    assert set(alerts) == ALERTS
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert {"summary", "description"} <= set(rule["annotations"]), name
    tested: dict[str, set[bool]] = {}
    for group in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for case in group["alert_rule_test"]:
            tested.setdefault(case["alertname"], set()).add(bool(case["exp_alerts"]))
    assert {name: {True, False} for name in ALERTS} == tested  # each fires once and stays quiet once


@needs_promtool
def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    """Each panel's expression, Grafana's variables filled in, as a recording rule for promtool."""
    def fill(expr: str) -> str:
        return re.sub(r"\$\w+", ".*", re.sub(r"\$__\w+", "5m", expr))

    rules = [{"record": f"dashboard:panel_{key.replace('/', '_')}", "expr": fill(expr)}
             for key, expr in dashboard_queries(load_dashboard()).items()]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    check = run_promtool("check", "rules", str(path))
    assert check.returncode == 0, check.stdout + check.stderr


def test_dashboard_is_well_formed() -> None:
    dashboard = load_dashboard()
    assert dashboard["schemaVersion"] >= 36 and dashboard["uid"] and dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    shown = list(panels(dashboard))
    assert len(shown) >= 20
    cells: set[tuple[int, int]] = set()
    for panel in shown:
        name = panel.get("title") or f"panel {panel['id']}"
        assert panel.get("title"), name
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, name
        assert panel["targets"] and all(t.get("expr") and t["datasource"] == panel["datasource"]
                                         for t in panel["targets"]), name
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, name
        area = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not area & cells, f"{name} overlaps another panel"
        cells |= area
    titles = " | ".join(panel["title"] for panel in shown).lower()
    for topic in ("latency", "5xx", "model version", "tier", "score distribution", "roc-auc", "psi",
                  "training", "gate", "shadow", "experiment"):
        assert topic in titles, topic


# --- what a running service exports ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every series name on ``/metrics`` of a service that scored leads, with monitoring states in its
    store and a finished training job (a family without samples yet counts with its series' names)."""
    root = tmp_path_factory.mktemp("deploy")
    fitted = fit_table(make_flat_leads(300, seed=0), target=TARGET, id_column="lead_id",
                       candidates=["logistic"])
    registry = Registry(root / "registry")
    version = registry.register(save_bundle(fitted.bundle, root / "v1"), activate=True)  # one is enough
    settings = ServiceSettings(registry=registry.root, keys_file=write_keys(root / "keys.yaml"),
                               poll_interval=0.1, log_flush_interval=0.05)
    engine = sa.create_engine(settings.prediction_log_url)
    save_states(engine, STATES, datetime.now(UTC))
    experiments = ExperimentStore(engine)
    experiment = experiments.create("deploy-check", control="rules", treatment=version, split=0.5,
                                    window_days=1, min_days=14, mde=0.02, alpha=0.05, rules=RULES_POINTS,
                                    now=datetime(2025, 1, 1, tzinfo=UTC))
    experiments.record(experiment, [{"lead_id": f"E{i}", "assigned_at": datetime(2025, 1, 1, tzinfo=UTC)}
                                    for i in range(10)])
    engine.dispose()
    jobs = registry.root / JOBS_FOLDER
    jobs.mkdir()
    (jobs / "20250601120000-abc123.json").write_text(json.dumps(
        {"job": "20250601120000-abc123", "state": "failed", "started_at": "2025-06-01T12:00:00+00:00",
         "seconds": 12.5, "error": "the CRM folder is empty"}))
    with TestClient(create_app(settings)) as client:
        headers = {"X-API-Key": SCORER_KEY}
        assert client.post("/v1/score", json=LEAD, headers=headers).status_code == 200
        assert client.post("/v1/score/batch", json={"leads": [LEAD] * 3}, headers=headers).status_code == 200
        assert client.post("/v1/score", json={**LEAD, "budget": "x"}, headers=headers).status_code == 422
        page = client.get("/metrics").text
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",),
                "summary": ("", "_sum", "_count")}
    names = set()
    for family in text_string_to_metric_families(page):
        names |= {sample.name for sample in family.samples}
        names |= {family.name + suffix for suffix in suffixes.get(family.type, ("",))}
    return names


def test_the_service_exports_its_monitoring_and_training_figures(exported: set[str]) -> None:
    assert {"leadscore_http_request_duration_seconds_bucket", "leadscore_predictions_total",
            "leadscore_prediction_score_bucket", "leadscore_monitor_state", "leadscore_monitor_value",
            "leadscore_monitor_checked_timestamp_seconds", "leadscore_training_runs_total",
            "leadscore_training_last_duration_seconds", "leadscore_gate_decisions_total",
            "leadscore_experiment_assigned_leads", "leadscore_experiment_matured_leads",
            "leadscore_experiment_conversion_rate"} <= exported


def test_rules_read_only_exported_metrics(exported: set[str]) -> None:
    rules = load_rules()
    recorded = {rule["record"] for rule in rules if "record" in rule}
    used = set().union(*(metric_names(rule["expr"]) for rule in rules))
    assert {name for name in used if ":" in name} <= recorded
    unknown = {name for name in used if ":" not in name} - exported
    assert not unknown, f"the rules read metrics the service does not export: {sorted(unknown)}"
    assert "leadscore_http_request_duration_seconds_bucket" in used and "leadscore_monitor_state" in used


def test_dashboard_reads_only_exported_metrics(exported: set[str]) -> None:
    dashboard = load_dashboard()
    used_by = {name: key for key, expr in dashboard_queries(dashboard).items() for name in metric_names(expr)}
    used_by |= {name: "templating" for name in variable_metrics(dashboard)}
    unknown = {name: key for name, key in used_by.items() if name not in exported}
    assert not unknown, f"panels (id/refId) read metrics the service does not export: {unknown}"
    assert {"leadscore_training_runs_total", "leadscore_monitor_value", "leadscore_shadow_predictions_total",
            "leadscore_prediction_score_bucket"} <= set(used_by)
