"""Scheduled reports: a parameterised notebook run by papermill into a dated folder, as one HTML file.

``run_report("evaluation", model="20261129120000", since="2025-06-01")`` scores the labelled leads created
since that day with that version, runs ``notebooks/03_evaluation.ipynb`` on them and writes
``reports/html/<today>/evaluation.html`` (self-contained: figures embedded, no script), then rewrites
``reports/html/index.html``, which links every dated report. The executed notebook and its figures stay
in ``<today>/evaluation_files/``. A failing notebook leaves no HTML behind and says which cell failed.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from leadscore.artifacts.registry import Registry
from leadscore.core.exceptions import ConfigError, DataValidationError, LeadscoreError
from leadscore.core.files import atomic_write_text
from leadscore.data.tables import read_table, utc_timestamp, write_table

log = logging.getLogger(__name__)

# no transport warnings in a cron mail, nor the "KeyboardInterrupt caught in kernel" line a kernel may log
# while papermill stops it after a failed cell (the failure itself is reported as one line)
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=CRITICAL"]
TEMPLATE = "offline"  # notebooks/templates/offline: nbconvert's lab template without internet scripts


class ReportError(LeadscoreError):
    """A report notebook failed or could not be run."""


@dataclass(frozen=True)
class ReportRequest:
    """What the user asked for; paths are absolute by the time a report's ``prepare`` sees them."""

    name: str
    work: Path                     # <day>/<name>_files: inputs, figures, executed notebook
    model: str | None = None       # a registry version (default: the active one)
    since: pd.Timestamp | None = None
    data: Path | None = None       # labelled leads (evaluation) or snapshots (eda)
    registry: Path = Path("registry")
    root: Path = Path(".")         # the project: notebooks/, params.yaml, artifacts/
    db: str | None = None          # the monitoring store (default: beside the registry)
    now: pd.Timestamp | None = None  # monitoring: as of this day (default: the newest score)
    experiment: str | None = None  # experiment: its name in the store


@dataclass(frozen=True)
class ReportSpec:
    notebook: str
    title: str
    options: frozenset[str]        # which of model / since / data / db / now apply
    prepare: Callable[[ReportRequest], dict[str, Any]]   # -> papermill parameters
    default_data: str | None = None


def _since(frame: pd.DataFrame, since: pd.Timestamp | None, what: str) -> pd.DataFrame:
    if since is None:
        return frame
    created = pd.to_datetime(frame["created_at"], utc=True)
    kept = frame.loc[created >= since].reset_index(drop=True)
    if kept.empty:
        raise DataValidationError(f"{what}: no lead created on or after {since:%Y-%m-%d} "
                                  f"(the newest is {created.max():%Y-%m-%d})")
    return kept


def _since_text(since: pd.Timestamp | None) -> str:
    return "" if since is None else f", created on or after {since:%Y-%m-%d}"


def _prepare_eda(request: ReportRequest) -> dict[str, Any]:
    snapshots = request.data or request.root / "artifacts/features/snapshots.parquet"
    if request.since is not None:
        filtered = request.work / "snapshots.parquet"
        write_table(_since(read_table(snapshots), request.since, str(snapshots)), filtered)
        snapshots = filtered
    scope = f"lead snapshots from {snapshots}" + _since_text(request.since)
    return {"raw_dir": str(request.root / "data/raw"), "snapshots_path": str(snapshots),
            "output_dir": str(request.work), "params_path": str(request.root / "params.yaml"), "scope": scope}


def _prepare_comparison(request: ReportRequest) -> dict[str, Any]:
    models = request.root / "artifacts/models"
    return {"selection_dir": str(models / "selection"), "champion_dir": str(models / "champion"),
            "train_path": str(request.root / "artifacts/split/train.parquet"),
            "output_dir": str(request.work)}


def _prepare_evaluation(request: ReportRequest) -> dict[str, Any]:
    from leadscore.demo.truth import true_probability
    from leadscore.evaluation.holdout import measure_models, score_leads
    from leadscore.evaluation.tiers import saved_threshold

    registry = Registry(request.registry)
    version = request.model or registry.active_version()
    if version is None:
        raise ConfigError(f"{request.registry}/ has no active model: give --model VERSION")
    bundle = registry.load(version)
    data = request.data or request.root / "artifacts/split/test.parquet"
    leads = _since(read_table(data), request.since, str(data))
    if "label" not in leads:
        raise DataValidationError(f"{data}: expected a 'label' column (0/1 outcome) for an evaluation report")
    predictions = score_leads({"champion": bundle}, leads)
    meta = bundle.metadata
    window = meta.get("snapshot") or {}
    truth = true_probability(leads, request.root / "data/truth/true_probability.parquet",
                             window.get("snapshot_days", 7), window.get("label_window_days", 90)) \
        if window else None
    if truth is not None:
        predictions["true_probability"] = truth
    metrics = {"champion": meta.get("model"), **measure_models(
        predictions["label"], {"champion": predictions["champion"]},
        threshold=saved_threshold(meta),
        threshold_info=meta.get("threshold"), truth=truth)}
    metrics_path, predictions_path = request.work / "metrics.json", request.work / "predictions.parquet"
    atomic_write_text(metrics_path, json.dumps(metrics, indent=2, default=float) + "\n")
    write_table(predictions, predictions_path)
    scope = (f"model version {version}{' (active)' if version == registry.active_version() else ''} on "
             f"{len(leads):,} labelled leads from {data}{_since_text(request.since)}")
    return {"metrics_path": str(metrics_path), "predictions_path": str(predictions_path),
            "model_dir": str(registry.path(version)), "output_dir": str(request.work),
            "registry_dir": str(request.registry), "scope": scope}


def _prepare_monitoring(request: ReportRequest) -> dict[str, Any]:
    from leadscore.artifacts.paths import LOG_TABLE, OUTCOMES_TABLE, default_store_url
    from leadscore.monitoring.predlog import count_logged, open_database

    db = request.db or default_store_url(request.registry)
    engine, log_table, _ = open_database(db, LOG_TABLE, OUTCOMES_TABLE)
    try:
        logged = count_logged(engine, log_table, since=request.since)
    finally:
        engine.dispose()
    if not logged:  # before papermill: one line, no half-run notebook
        raise DataValidationError(f"no scores in {db}" + ("" if request.since is None else
                                                          f" scored on or after {request.since:%Y-%m-%d}"))
    model_dir = ""
    if request.model is not None:  # a model folder, else a registry version (ModelNotFoundError if not)
        model_dir = str(Path(request.model).resolve()) if Path(request.model).is_dir() \
            else str(Registry(request.registry).path(request.model))
    scope = (f"scores and outcomes in {db}" + ("" if request.since is None else
                                                f", scored on or after {request.since:%Y-%m-%d}")
             + (f", judged by the model in {model_dir}" if model_dir else ", each judged by its own version"))
    return {"db_url": db, "model_dir": model_dir, "registry_dir": str(request.registry),
            "params_path": str(request.root / "params.yaml"),
            "since": "" if request.since is None else request.since.isoformat(),
            "now": "" if request.now is None else request.now.isoformat(),
            "output_dir": str(request.work), "scope": scope}


def _prepare_experiment(request: ReportRequest) -> dict[str, Any]:
    from leadscore.artifacts.paths import LOG_TABLE, OUTCOMES_TABLE, default_store_url
    from leadscore.experiments.store import ExperimentStore
    from leadscore.monitoring.predlog import open_database

    if not request.experiment:
        raise ConfigError("the experiment report needs --name EXPERIMENT (see `leadscore experiments list`)")
    db = request.db or default_store_url(request.registry)
    engine, _, _ = open_database(db, LOG_TABLE, OUTCOMES_TABLE)
    try:  # before papermill: one line, no half-run notebook
        experiment = ExperimentStore(engine).get(request.experiment)
    finally:
        engine.dispose()
    return {"db_url": db, "name": experiment.name, "params_path": str(request.root / "params.yaml"),
            "now": "" if request.now is None else request.now.isoformat(),
            "output_dir": str(request.work), "scope": f"Store: {db}."}


REPORTS: dict[str, ReportSpec] = {
    "eda": ReportSpec("01_eda.ipynb", "Exploratory analysis of the CRM extract",
                      frozenset({"since", "data"}), _prepare_eda),
    "model_comparison": ReportSpec("02_model_comparison.ipynb", "Model comparison (training period)",
                                   frozenset(), _prepare_comparison),
    "evaluation": ReportSpec("03_evaluation.ipynb", "Model performance on labelled leads",
                             frozenset({"model", "since", "data"}), _prepare_evaluation),
    "monitoring": ReportSpec("04_monitoring.ipynb", "Monitoring: drift, realized and estimated performance",
                             frozenset({"model", "since", "db", "now"}), _prepare_monitoring),
    "experiment": ReportSpec("05_experiment.ipynb", "A/B experiment: conversion per arm, lift, decision",
                             frozenset({"db", "now", "experiment"}), _prepare_experiment),
}


def _check_options(name: str, spec: ReportSpec, **given: Any) -> None:
    wrong = [option for option, value in given.items() if value is not None and option not in spec.options]
    if wrong:
        flag = {"experiment": "name"}  # the option's command-line name where it differs
        usable = ", ".join(f"--{flag.get(o, o)}" for o in sorted(spec.options)) or "none"
        raise ConfigError(f"--{flag.get(wrong[0], wrong[0])} does not apply to the {name} report "
                          f"(its options: {usable})")


def _execute(notebook: Path, executed: Path, parameters: dict[str, Any], cwd: Path, progress: bool) -> None:
    try:
        import papermill
    except ImportError as exc:  # the pipeline extra is not installed
        raise ConfigError("reports need papermill and nbconvert: pip install 'leadscore[pipeline]'") from exc
    try:
        papermill.execute_notebook(str(notebook), str(executed), parameters=parameters, cwd=str(cwd),
                                   kernel_name="python3", progress_bar=progress, log_output=False,
                                   extra_arguments=KERNEL_ARGUMENTS)
    except papermill.PapermillExecutionError as exc:
        failed = executed.with_suffix(".failed.ipynb")
        if executed.exists():
            executed.replace(failed)
        raise ReportError(f"{notebook.name} failed in cell {exc.exec_count}: {exc.ename}: "
                          f"{str(exc.evalue).splitlines()[0] if exc.evalue else ''} "
                          f"(executed notebook kept at {failed})") from exc


def notebook_html(executed: Path, templates: Path) -> str:
    """The executed notebook as self-contained HTML: code hidden, figures embedded, no script."""
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name=TEMPLATE, extra_template_basedirs=[str(templates)],
                            exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(nbformat.read(str(executed), as_version=4))
    return str(body)


def run_report(name: str, *, model: str | None = None, since: str | None = None, data: str | None = None,
               db: str | None = None, now: str | None = None, experiment: str | None = None,
               out_dir: str | Path = "reports/html", registry: str | Path = "registry",
               root: str | Path = ".", today: date | None = None, progress: bool = False) -> Path:
    """Run report ``name`` into ``out_dir/<today>/<name>.html``, refresh the index; the HTML's path.

    Raises
    ------
    ConfigError
        On an unknown report, an option the report does not take, or a missing notebook.
    ReportError
        If the notebook fails (no HTML is written; the executed notebook is kept for debugging).
    """
    if name not in REPORTS:
        raise ConfigError(f"unknown report {name!r}; choose from {', '.join(REPORTS)}")
    spec = REPORTS[name]
    _check_options(name, spec, model=model, since=since, data=data, db=db, now=now, experiment=experiment)
    root = Path(root).resolve()
    notebook = root / "notebooks" / spec.notebook
    if not notebook.exists():
        raise ConfigError(f"{notebook} not found: run `leadscore report` from the project folder "
                          f"(the one holding notebooks/ and params.yaml)")
    start = None if since is None else utc_timestamp(since, "--since")
    day = Path(out_dir).resolve() / (today or datetime.now(UTC).date()).isoformat()
    work = day / f"{name}_files"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    request = ReportRequest(name, work, model, start, None if data is None else Path(data).resolve(),
                            Path(registry).resolve(), root, db,
                            None if now is None else utc_timestamp(now, "--now"), experiment)
    executed = work / f"{name}.ipynb"
    _execute(notebook, executed, spec.prepare(request), root, progress)
    html = atomic_write_text(day / f"{name}.html", notebook_html(executed, root / "notebooks" / "templates"))
    write_index(Path(out_dir))
    return html


def write_index(out_dir: str | Path) -> Path:
    """``out_dir/index.html``: every dated report, newest day first, and the pipeline's own reports."""
    from leadscore.reporting.index import index_page

    out = Path(out_dir)
    return atomic_write_text(out / "index.html", index_page(out, {k: s.title for k, s in REPORTS.items()}))
