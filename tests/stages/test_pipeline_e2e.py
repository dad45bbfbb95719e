"""`dvc repro` end to end on a tiny demo extract, in a scratch copy of the project."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO

# `make test` runs pytest with --dist loadfile: one worker runs this whole module, so the scratch
# project (a full `dvc repro`) is built once
pytestmark = pytest.mark.slow


def execute(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1"}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)


def run(cmd: list[str], cwd: Path) -> str:
    proc = execute(cmd, cwd)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


@pytest.fixture(scope="session")  # session: built once even when other modules' tests run in between
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("project")
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy(REPO / name, root / name)
    for name in ("notebooks", "src"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["demo"]["n_leads"] = 3000
    params["model_comparison"].update(candidates=["rules", "logistic", "lightgbm"], cv_folds=3,
                                      time_budget_seconds=4)
    params["segments"]["min_positives"] = 40
    params["clusters"]["k"] = 3
    params["experiment_demo"]["n_leads"] = 20_000
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["dvc", "init", "--no-scm", "-q"], root)
    run(["dvc", "config", "core.analytics", "false"], root)
    run(["leadscore", "demo", "--out", "data"], root)
    run(["dvc", "add", "-q", "data"], root)
    run(["dvc", "repro"], root)
    return root


def test_repro_builds_models_metrics_and_reports(project):
    metrics = json.loads((project / "reports/metrics.json").read_text())
    assert set(metrics["models"]) == {"champion", "rules", "logistic", "lightgbm"}
    for model in metrics["models"].values():
        assert {"roc_auc", "pr_auc", "brier", "log_loss", "ece", "precision", "recall"} <= set(model)
        assert 0.5 < model["roc_auc"] <= 1.0
    assert set(metrics["improvement_pct"]) == {"vs_rules", "vs_logistic"}
    cv = json.loads((project / "reports/model_comparison/cv_scores.json").read_text())
    assert {"rules", "logistic", "lightgbm", "champion"} <= set(cv)
    for figure in ("curves", "gains_lift", "shap_summary", "radar", "feature_importance"):
        assert (project / f"reports/model_comparison/figures/{figure}.png").stat().st_size > 1000
    for plot in ("roc", "pr", "calibration"):
        assert (project / f"reports/evaluate/plots/{plot}.csv").stat().st_size > 0
    html = (project / "reports/html/03_evaluation.html").read_text()
    assert "performance report" in html and "import json" not in html  # code hidden
    for name in ("01_eda", "02_model_comparison", "04_monitoring", "05_experiment"):
        assert (project / f"reports/html/{name}.html").exists()
        assert (project / f"reports/notebooks/{name}.ipynb").exists()
    monitoring = json.loads((project / "reports/monitoring/metrics.json").read_text())
    assert monitoring["state"] in ("ok", "warn", "alert") and "estimated_0_days_after" in \
        monitoring["estimate_coverage"]
    simulation = json.loads((project / "reports/experiment/simulation.json").read_text())
    assert simulation["leads"] > 10_000 and simulation["true_lift"] > 0  # the model ranks better than rules
    results = json.loads((project / "reports/experiment/results.json").read_text())
    assert sum(results["matured"].values()) == simulation["leads"] and sum(results["pending"].values()) == 0
    assert results["recommendation"]["action"] in ("deploy", "keep_running", "iterate", "rollback")


def test_exported_model_carries_metadata_and_no_leakage(project):
    meta = json.loads((project / "artifacts/export/metadata.json").read_text())
    for key in ("features", "weights", "calibration", "threshold", "tiers", "candidates",
                "training_window", "test_metrics", "data_sha256", "packages", "sha256"):
        assert meta.get(key), key
    assert {f["column"] for f in meta["leakage_findings"]} >= {"sales_status"}
    assert any(f["check"] != "declared" for f in meta["leakage_findings"]
               if f["column"] == "sales_status")  # caught by the guard's statistics, not only the rule
    from leadscore.data.snapshot import FEATURES

    names = {f["name"] for f in meta["features"]}
    # every documented feature but the post-outcome column and days_since_creation, constant at
    # training time (every training lead is scored exactly snapshot_days after creation)
    assert names == set(FEATURES) - {"days_since_creation"}
    assert meta["dropped_columns"]["sales_status"].startswith("post-outcome")
    assert meta["packages"]["lightgbm"]
    from leadscore.artifacts.registry import Registry

    registry = Registry(project / "registry")
    active = registry.active_version()
    assert active and registry.show(active)["sha256"] == meta["sha256"]


def _stale(project: Path) -> set[str]:
    """Stages `dvc status` calls changed, without the extract stage (always changed by design)."""
    status = json.loads(run(["dvc", "status", "--json"], project).splitlines()[-1])
    assert status.pop("extract", ["always changed"]) == ["always changed"]
    return set(status)


def test_second_repro_reruns_only_the_extract_and_one_param_reruns_only_its_stage(project):
    again = run(["dvc", "repro"], project)
    # only the extract stage runs every time (a CRM database has no hash DVC could watch); its output is
    # byte-identical, so nothing after it reruns
    assert re.findall(r"Running stage '([a-z_]+)'", again) == ["extract"]
    # stages depend on the folders they use: the API's code is in none of them
    for edited in ("service/auth.py", "service/routes.py", "cli/serve.py"):
        path = project / "src/leadscore" / edited
        path.write_text(path.read_text() + "\n# edited by the test\n")
    assert _stale(project) == set()
    path = project / "src/leadscore/monitoring/predlog.py"  # the replay writes through it: only monitoring
    original = path.read_text()
    path.write_text(original + "\n# edited by the test\n")
    assert _stale(project) == {"monitoring"}
    path.write_text(original)
    path = project / "src/leadscore/training/selection.py"  # but training code reruns training
    original = path.read_text()
    path.write_text(original + "\n# edited by the test\n")
    stale = _stale(project)
    assert "train" in stale and not stale & {"features", "split", "eda"}
    path.write_text(original)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["eda"]["sample_rows"] = 500
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert _stale(project) == {"eda"}


def test_score_open_leads_from_the_crm_tables_with_the_active_model(project):
    """`leadscore score --crm`: open leads snapshotted with the training feature code, scored by the
    registry's active version, with reasons; the same leads and scores as the split's open rows."""
    import pandas as pd

    out = run(["leadscore", "score", "--crm", "data/raw", "--output", "scores/open.parquet",
               "--reasons", "2", "-q"], project)
    assert "scored" in out
    scores = pd.read_parquet(project / "scores/open.parquet")
    open_rows = pd.read_parquet(project / "artifacts/split/open.parquet")
    outcomes = pd.read_parquet(project / "data/raw/outcomes.parquet")
    converted = set(outcomes.loc[outcomes["converted_at"].notna(), "lead_id"].astype(str))
    open_ids = set(open_rows["lead_id"].astype(str))
    assert set(scores["lead_id"]) == open_ids - converted and len(scores) > 0
    from leadscore.artifacts.registry import Registry
    from leadscore.scoring.scorer import Scorer

    active = Registry(project / "registry").active_version()
    assert set(scores["model_version"]) == {active}
    expected = Scorer.load(registry=project / "registry").score_frame(open_rows, reasons=2)
    merged = scores.merge(expected.astype({"lead_id": str}), on="lead_id", suffixes=("", "_split"))
    assert len(merged) == len(scores)
    assert (merged["probability"] - merged["probability_split"]).abs().max() < 1e-9
    assert (merged["reasons"] == merged["reasons_split"]).all()
    assert scores["reasons"].str.contains('"text"').any()


# every figure each report shows
REPORT_FIGURES = {"01_eda": 9, "02_model_comparison": 7, "03_evaluation": 7, "04_monitoring": 4,
                  "05_experiment": 2}


def test_reports_show_every_chart_in_a_real_browser(project, tmp_path):
    """Each HTML report, opened from disk in headless Chromium: every figure is an embedded image that
    rendered, nothing is fetched from the network, no traceback, warning, error or raw dict shows."""
    from browser_support import browser_context

    with browser_context(tmp_path / "profile") as context:
        for name, expected in REPORT_FIGURES.items():
            page = context.new_page()
            fetched: list[str] = []
            page.on("request", lambda request, seen=fetched: seen.append(request.url))
            page.goto((project / f"reports/html/{name}.html").as_uri(), wait_until="load")
            images = page.eval_on_selector_all(
                "img", "els => els.map(e => [e.src.slice(0, 22), e.complete, e.naturalWidth, "
                       "e.naturalHeight])")
            assert len(images) == expected, (name, len(images))
            assert all(src == "data:image/png;base64," for src, *_ in images), name
            assert all(done and width > 200 and height > 100 for _, done, width, height in images), images
            alts = page.eval_on_selector_all("img", "els => els.map(e => e.alt)")
            assert all(alt and "No description" not in alt for alt in alts), (name, alts)
            assert [url for url in fetched if not url.startswith(("file:", "data:"))] == [], name
            text = page.inner_text("body")
            for bad in ("Traceback", "Warning", "Error", "{'", "IProgress", "nan%"):
                assert bad not in text, (name, bad, text[max(0, text.find(bad) - 200):text.find(bad) + 200])
            assert "import " not in text  # code hidden
            page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
            page.close()
    assert all((tmp_path / f"{name}.png").stat().st_size > 10_000 for name in REPORT_FIGURES)


CARD_SECTIONS = ["Model details", "Intended use", "Training data and label", "Features and leakage guard",
                 "Evaluation", "Calibration", "Threshold and tiers", "Quality per segment",
                 "Known limitations"]


def test_model_card_of_the_demo_champion_in_a_real_browser(project, tmp_path):
    """The card written when `export` registered the champion: every section, the test period's figures
    with intervals, the reliability chart drawn, nothing fetched; `models card` prints the same card."""
    from browser_support import browser_context

    from leadscore.artifacts.registry import Registry

    registry = Registry(project / "registry")
    version = registry.active_version()
    folder = registry.path(version)
    meta = registry.show(version)
    assert run(["leadscore", "models", "card", "active"], project) == (folder / "model_card.md").read_text()
    with browser_context(tmp_path / "profile") as context:
        page = context.new_page()
        fetched: list[str] = []
        page.on("request", lambda request: fetched.append(request.url))
        page.goto((folder / "model_card.html").as_uri(), wait_until="load")
        assert page.eval_on_selector_all("h2", "els => els.map(e => e.textContent)") == CARD_SECTIONS
        chart = page.locator("figure.chart svg").bounding_box()
        assert chart and chart["width"] > 200 and chart["height"] > 200
        assert page.locator("figure.chart circle").count() == len(meta["holdout"]["calibration"]) == 10
        text = page.inner_text("body")
        low, high = meta["holdout"]["ci"]["roc_auc"]
        assert f"{low:.3f} to {high:.3f}" in text and "test period" in text
        assert "sales_status" in text and "By vertical:" in text and "By source:" in text
        for bad in ("Traceback", "None", "nan", "{'"):
            assert bad not in text, bad
        assert [url for url in fetched if not url.startswith(("file:", "data:"))] == []
        page.screenshot(path=str(tmp_path / "model_card.png"), full_page=True)
    assert (tmp_path / "model_card.png").stat().st_size > 10_000


def test_scheduled_report_lands_in_a_dated_folder_linked_from_the_index(project, tmp_path):
    """`leadscore report evaluation --since DATE`: the active model on the labelled leads since DATE, in
    OUT/YYYY-MM-DD/evaluation.html, reachable from OUT/index.html; bad requests fail in one line."""
    import pandas as pd
    from browser_support import browser_context

    test = pd.read_parquet(project / "artifacts/split/test.parquet")
    since = pd.to_datetime(test["created_at"]).median().strftime("%Y-%m-%d")
    kept = int((pd.to_datetime(test["created_at"], utc=True) >= pd.Timestamp(since, tz="UTC")).sum())
    out_dir = tmp_path / "html"
    proc = execute(["leadscore", "report", "evaluation", "--since", since, "--out", str(out_dir), "--json"],
                   project)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr == ""  # nothing for a cron mail but the answer
    doc = json.loads(proc.stdout)
    report = Path(doc["report"])
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", report.parent.name) and report.name == "evaluation.html"
    assert Path(doc["index"]) == out_dir.resolve() / "index.html"
    metrics = json.loads((report.parent / "evaluation_files/metrics.json").read_text())
    assert metrics["test_rows"] == kept
    with browser_context(tmp_path / "profile") as context:
        page = context.new_page()
        page.goto(Path(doc["index"]).as_uri(), wait_until="load")
        page.click("text=Model performance on labelled leads")
        page.wait_for_load_state("load")
        assert page.url == report.as_uri()
        text = page.inner_text("body")
        assert f"on {kept:,} labelled leads" in text and f"created on or after {since}" in text
        images = page.eval_on_selector_all("img", "els => els.map(e => [e.naturalWidth, e.alt])")
        assert len(images) == REPORT_FIGURES["03_evaluation"]
        assert all(width > 200 and alt for width, alt in images)
        for bad in ("Traceback", "Warning", "Error", "{'"):
            assert bad not in text, bad
    before = sorted(p.name for p in report.parent.iterdir())
    for argv, message in (
            (["evaluation", "--since", "2099-01-01"], "no lead created on or after 2099-01-01"),
            (["evaluation", "--since", "someday"], "--since 'someday': expected a date"),
            (["model_comparison", "--since", since], "--since does not apply to the model_comparison report"),
            (["evaluation", "--model", "19990101000000"], "no model version 19990101000000")):
        proc = execute(["leadscore", "report", *argv, "--out", str(out_dir)], project)
        assert proc.returncode == 2 and message in proc.stderr, (argv, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    after = sorted(p.name for p in report.parent.iterdir())
    assert after == before  # a failed run leaves no HTML behind
    snapshots = pd.read_parquet(project / "artifacts/features/snapshots.parquet").drop(columns="vertical")
    snapshots.to_parquet(tmp_path / "broken.parquet")
    proc = execute(["leadscore", "report", "eda", "--data", str(tmp_path / "broken.parquet"), "--out",
                    str(out_dir), "-q"], project)
    assert proc.returncode == 2 and "01_eda.ipynb failed in cell" in proc.stderr and "KeyError" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (report.parent / "eda.html").exists()
    assert (report.parent / "eda_files" / "eda.failed.ipynb").exists()  # kept for debugging


def test_scheduled_monitoring_report_on_the_replayed_store(project, tmp_path):
    """`leadscore report monitoring` on the store the pipeline's replay filled: a dated page with the
    four charts, linked from the index; an empty range fails in one line."""
    from browser_support import browser_context

    out_dir = tmp_path / "html"
    common = ["--db", "sqlite:///artifacts/monitoring/store.db", "--model", "artifacts/export",
              "--out", str(out_dir)]
    proc = execute(["leadscore", "report", "monitoring", *common, "--since", "2025-01-01", "--json"], project)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = Path(json.loads(proc.stdout)["report"])
    assert report.name == "monitoring.html"
    with browser_context(tmp_path / "profile") as context:
        page = context.new_page()
        page.goto((out_dir / "index.html").as_uri(), wait_until="load")
        page.click("text=Monitoring: drift, realized and estimated performance")
        page.wait_for_load_state("load")
        text = page.inner_text("body")
        assert "scored on or after 2025-01-01" in text and "State:" in text
        images = page.eval_on_selector_all("img", "els => els.map(e => [e.naturalWidth, e.alt])")
        assert len(images) == REPORT_FIGURES["04_monitoring"] and all(w > 200 and alt for w, alt in images)
        for bad in ("Traceback", "Warning", "Error", "{'", "nan%"):
            assert bad not in text, bad
    proc = execute(["leadscore", "report", "monitoring", *common, "--since", "2099-01-01"], project)
    assert proc.returncode == 2 and "no scores in sqlite:///artifacts/monitoring/store.db" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_scheduled_experiment_report_on_the_simulated_store(project, tmp_path):
    """`leadscore report experiment --name` on the store the pipeline's simulation filled: a dated page
    with both charts and the recommendation, linked from the index; an unknown experiment fails in one
    line before any notebook runs."""
    from browser_support import browser_context

    out_dir = tmp_path / "html"
    common = ["--db", "sqlite:///artifacts/experiments/store.db", "--out", str(out_dir)]
    proc = execute(["leadscore", "report", "experiment", "--name", "demo-ml-vs-rules", *common, "--json"],
                   project)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert Path(json.loads(proc.stdout)["report"]).name == "experiment.html"
    results = json.loads(execute(["leadscore", "experiments", "results", "demo-ml-vs-rules", "--json",
                                  "--db", "sqlite:///artifacts/experiments/store.db"], project).stdout)
    with browser_context(tmp_path / "profile") as context:
        page = context.new_page()
        page.goto((out_dir / "index.html").as_uri(), wait_until="load")
        page.click("text=A/B experiment: conversion per arm, lift, decision")
        page.wait_for_load_state("load")
        text = page.inner_text("body")
        verdict = {"deploy": "Deploy the treatment", "keep_running": "Keep the experiment running",
                   "iterate": "Iterate", "rollback": "Roll back"}[results["recommendation"]["action"]]
        assert verdict in text and "demo-ml-vs-rules" in text
        assert f"{results['sequential_p_value']:.4g}" in text  # the always-valid p-value, as the CLI gives it
        images = page.eval_on_selector_all("img", "els => els.map(e => [e.naturalWidth, e.alt])")
        assert len(images) == REPORT_FIGURES["05_experiment"] and all(w > 200 and alt for w, alt in images)
        for bad in ("Traceback", "Warning", "Error", "{'", "nan%"):
            assert bad not in text, bad
    proc = execute(["leadscore", "report", "experiment", "--name", "nope", *common], project)
    assert proc.returncode == 2 and "no experiment 'nope'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
