"""The data steps of ``dvc repro`` for the demo CRM: snapshot features, time split, and the export.
Training is in :mod:`leadscore.stages.train`, the test-period assessment in :mod:`leadscore.stages.evaluate`.

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

from leadscore.artifacts.bundle import load_bundle, save_bundle
from leadscore.core.config import Params
from leadscore.core.exceptions import DataValidationError, InputFileError
from leadscore.data import snapshot
from leadscore.data.schema import TableSchema, infer_schema
from leadscore.data.tables import read_table, write_table

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
    # Post-outcome columns stay in the table so the leakage guard can show what they would do;
    # the feature schema drops them (snapshot_schema).
    snap = snapshot.build_snapshot(
        tables["leads"], tables["activities"], snapshot_days=params.snapshot.snapshot_days,
        as_of=end, placeholders=params.features.placeholders)
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


def snapshot_schema(train: pd.DataFrame, params: Params, *, keep_excluded: bool = False) -> TableSchema:
    """Feature schema of a snapshot table: everything but ids, times, labels and (unless
    ``keep_excluded``, for the leakage checks) the post-outcome columns of ``features.exclude``."""
    excluded = () if keep_excluded else params.features.exclude
    drop = [c for c in (*NOT_FEATURES, *excluded) if c in train.columns]
    schema = infer_schema(train, target="label", id_column="lead_id", time_column="created_at",
                          drop=drop, placeholders=params.features.placeholders)
    for name in excluded:
        if name in schema.dropped:
            schema.dropped[name] = "post-outcome column (features.exclude): never a feature"
    return schema


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
