"""The steps of ``dvc repro`` for the demo CRM: snapshot features, time split, train, evaluate, export.

Each function reads explicit paths and writes under explicit output folders, so ``dvc.yaml`` shows the
whole data flow. Notebooks call the same package functions for their tables and plots.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from leadscore import snapshot
from leadscore.bundle import ModelBundle, load_bundle, save_bundle
from leadscore.config import Params
from leadscore.data import read_table, write_table
from leadscore.evaluation import calibration_table, classification_metrics, pr_points, roc_points
from leadscore.exceptions import DataValidationError, InputFileError
from leadscore.schema import TableSchema, infer_schema, prepare_features
from leadscore.training import fit_pipeline

log = logging.getLogger(__name__)

CRM_TABLES = ("leads", "activities", "outcomes")
NOT_FEATURES = ("created_at", "snapshot_at", "status")


def load_crm(raw_dir: str | Path) -> dict[str, pd.DataFrame]:
    """Read ``leads``, ``activities`` and ``outcomes`` (Parquet or CSV) from ``raw_dir``."""
    raw_dir = Path(raw_dir)
    tables = {}
    for name in CRM_TABLES:
        found = [p for p in (raw_dir / f"{name}.parquet", raw_dir / f"{name}.csv") if p.exists()]
        if not found:
            raise InputFileError(f"no {name}.parquet or {name}.csv in {raw_dir}")
        tables[name] = read_table(found[0])
    return tables


def data_fingerprint(raw_dir: str | Path) -> str:
    """sha256 over the raw files' names and bytes: identifies the data a model was trained on."""
    digest = hashlib.sha256()
    for path in sorted(Path(raw_dir).rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(raw_dir)).encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def build_features(raw_dir: str | Path, out_path: str | Path, params: Params) -> pd.DataFrame:
    """Point-in-time snapshot of every lead with its label and status; written to ``out_path``."""
    tables = load_crm(raw_dir)
    end = snapshot.data_end(tables)
    snap = snapshot.build_snapshot(
        tables["leads"], tables["activities"], snapshot_days=params.snapshot.snapshot_days,
        as_of=end, placeholders=params.features.placeholders, exclude=params.features.exclude)
    snap = snapshot.attach_labels(snap, tables["outcomes"],
                                  label_window_days=params.snapshot.label_window_days, end=end)
    write_table(snap, out_path)
    return snap


def split_by_time(snapshots: pd.DataFrame, test_months: int) -> dict[str, pd.DataFrame]:
    """``train``/``test``: labelled leads, test = the last ``test_months`` of creation dates;
    ``open``: leads without a label yet (to be scored, never evaluated)."""
    labelled = snapshots[snapshots["status"] == "closed"]
    if labelled.empty:
        raise DataValidationError("no lead has a closed label window: the data span is too short")
    cutoff = labelled["created_at"].max() - pd.DateOffset(months=test_months)
    parts = {
        "train": labelled[labelled["created_at"] <= cutoff],
        "test": labelled[labelled["created_at"] > cutoff],
        "open": snapshots[snapshots["status"] == "open"],
    }
    for name in ("train", "test"):
        if parts[name]["label"].nunique() < 2:
            raise DataValidationError(f"the {name} period has only one class; change split.test_months")
    return {k: v.reset_index(drop=True) for k, v in parts.items()}


def write_split(snapshots_path: str | Path, out_dir: str | Path, test_months: int) -> dict[str, Any]:
    parts = split_by_time(read_table(snapshots_path), test_months)
    out_dir = Path(out_dir)
    summary: dict[str, Any] = {}
    for name, part in parts.items():
        write_table(part, out_dir / f"{name}.parquet")
        summary[name] = {
            "rows": int(len(part)),
            "created_from": str(part["created_at"].min()), "created_to": str(part["created_at"].max()),
            "conversion_rate": None if name == "open" else round(float(part["label"].mean()), 6),
        }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def snapshot_schema(train: pd.DataFrame, params: Params) -> TableSchema:
    """Feature schema of a snapshot table: everything but ids, times, labels and excluded columns."""
    drop = [c for c in (*NOT_FEATURES, *params.features.exclude) if c in train.columns]
    return infer_schema(train, target="label", id_column="lead_id", time_column="created_at",
                        drop=drop, placeholders=params.features.placeholders)


def train_models(train_path: str | Path, out_dir: str | Path, params: Params,
                 candidates: tuple[str, ...] | None = None) -> dict[str, ModelBundle]:
    """Fit every candidate on the training period; each bundle goes to ``out_dir/<name>``."""
    train = read_table(train_path)
    schema = snapshot_schema(train, params)
    X, y = prepare_features(train, schema), train["label"].astype(int)
    bundles = {}
    for name in candidates or params.candidates:
        model_params = params.train.params_for(name)
        pipeline = fit_pipeline(name, schema, X, y, model_params, params.seed)
        bundle = ModelBundle(pipeline, schema, {
            "model": name, "params": model_params, "seed": params.seed,
            "features": [{"name": c.name, "kind": c.kind, "required": c.required}
                         for c in schema.columns],
            "excluded_columns": list(params.features.exclude),
            "training_window": [str(train["created_at"].min()), str(train["created_at"].max())],
            "rows": int(len(train)), "positive_rate": round(float(y.mean()), 6),
            "snapshot": {"snapshot_days": params.snapshot.snapshot_days,
                         "label_window_days": params.snapshot.label_window_days},
        })
        save_bundle(bundle, Path(out_dir) / name)
        bundles[name] = bundle
        log.info("trained %s on %d leads", name, len(train))
    return bundles


def evaluate_models(models_dir: str | Path, test_path: str | Path, out_dir: str | Path, *,
                    champion: str, truth_path: str | Path | None = None,
                    snapshot_days: float = 7, label_window_days: float = 90,
                    bins: int = 10) -> dict[str, Any]:
    """Test-period metrics of every trained model, plot data for the champion, truth comparison."""
    test = read_table(test_path)
    y = test["label"].astype(int)
    truth = None
    if truth_path is not None and Path(truth_path).exists():
        from leadscore.demo import label_probability

        p_convert = test["lead_id"].map(read_table(truth_path).set_index("lead_id")["p_convert"])
        truth = label_probability(p_convert.to_numpy(float), snapshot_days, label_window_days)
    out_dir = Path(out_dir)
    metrics: dict[str, Any] = {"champion": champion, "test_rows": int(len(test)), "models": {}}
    predictions = pd.DataFrame({"lead_id": test["lead_id"], "label": y})
    for model_dir in sorted(p for p in Path(models_dir).iterdir() if p.is_dir()):
        bundle = load_bundle(model_dir)
        prob = bundle.pipeline.predict_proba(prepare_features(test, bundle.schema))[:, 1]
        predictions[model_dir.name] = prob
        metrics["models"][model_dir.name] = classification_metrics(y, prob, bins)
        if truth is not None:
            metrics["models"][model_dir.name]["mae_vs_true_probability"] = round(
                float(abs(prob - truth).mean()), 6)
    if champion not in metrics["models"]:
        raise DataValidationError(f"champion {champion!r} is not among the trained models")
    metrics["test"] = metrics["models"][champion]
    if truth is not None:
        predictions["true_probability"] = truth
        metrics["true_probability_roc_auc"] = classification_metrics(y, truth, bins)["roc_auc"]
    prob = predictions[champion].to_numpy()
    plots = out_dir / "plots"
    write_table(roc_points(y, prob), plots / "roc.csv")
    write_table(pr_points(y, prob), plots / "pr.csv")
    write_table(calibration_table(y, prob, bins, truth), plots / "calibration.csv")
    write_table(predictions, out_dir / "test_predictions.parquet")
    return metrics


def export_model(model_dir: str | Path, metrics_path: str | Path, raw_dir: str | Path,
                 out_dir: str | Path) -> Path:
    """Copy the champion bundle with its test metrics and the raw-data fingerprint in the metadata."""
    bundle = load_bundle(model_dir)
    metrics = json.loads(Path(metrics_path).read_text())
    bundle.metadata.update({
        "test_metrics": metrics.get("test"),
        "data_sha256": data_fingerprint(raw_dir),
    })
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    return save_bundle(bundle, out_dir)
