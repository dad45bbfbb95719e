"""The ``train`` stage: leakage guard, model selection, segments, threshold; writes the champion bundle,
one bundle per candidate (for the test-period comparison) and the selection artifacts."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from leadscore.artifacts.bundle import ModelBundle, package_versions, save_bundle
from leadscore.core.config import Params
from leadscore.data.crm import snapshot_schema
from leadscore.data.schema import prepare_features
from leadscore.data.tables import read_table, write_table
from leadscore.modeling.ensemble import LeadModel
from leadscore.training.build import (
    Champion,
    build_champion,
    champion_metadata,
    guard_leakage,
    leakage_settings,
)
from leadscore.training.build import selection_settings as make_settings
from leadscore.training.clusters import lead_clusters
from leadscore.training.selection import SelectionSettings, build_estimator

log = logging.getLogger(__name__)


def _base_metadata(train: pd.DataFrame, params: Params, schema: Any) -> dict[str, Any]:
    return {
        "features": schema.describe_columns(),
        "dropped_columns": schema.dropped,
        "excluded_columns": list(params.features.exclude),
        "training_window": [str(train["created_at"].min()), str(train["created_at"].max())],
        "rows": int(len(train)), "positive_rate": round(float(train["label"].mean()), 6),
        "snapshot": {"snapshot_days": params.snapshot.snapshot_days,
                     "label_window_days": params.snapshot.label_window_days},
        "seed": params.seed, "packages": package_versions(),
    }


def _save_candidates(X: pd.DataFrame, y: pd.Series, schema: Any, champion: Champion,
                     settings: SelectionSettings, out_dir: Path, base: dict[str, Any]) -> None:
    """Every candidate refitted on the whole training period, uncalibrated, for the test comparison."""
    for name, result in champion.selection.candidates.items():
        members = champion.selection.model.members
        member = members[name] if name in members else \
            build_estimator(name, schema, result.params, settings).fit(X, y)
        save_bundle(ModelBundle(LeadModel({name: member}, {name: 1.0}), schema,
                                {**base, "model": name, "params": result.params,
                                 "cv_metrics": result.metrics}), out_dir / "candidates" / name)


def _save_selection(train: pd.DataFrame, X: pd.DataFrame, y: pd.Series, schema: Any, champion: Champion,
                    params: Params, out_dir: Path) -> None:
    selection = champion.selection
    oof = pd.DataFrame({"lead_id": train["lead_id"], "created_at": train["created_at"], "label": y,
                        "covered": selection.covered})
    for name, result in selection.candidates.items():
        oof[name] = result.oof
    oof["champion"] = selection.champion_oof()
    folder = out_dir / "selection"
    write_table(oof, folder / "oof.parquet")
    selection.table.to_csv(folder / "cv_table.csv")
    if champion.segments is not None:
        champion.segments.table.to_csv(folder / "segments.csv", index=False)
    clusters = lead_clusters(X, y, schema, k=params.clusters_k, seed=params.seed)
    clusters.profile.to_csv(folder / "clusters.csv", index=False)
    summary = {"champion": selection.champion, "weights": selection.weights,
               "calibration": selection.calibration.method, "seconds": round(selection.seconds, 1),
               "threshold": champion.threshold.threshold, "threshold_detail": champion.threshold.detail}
    (folder / "selection.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")


def train_stage(train_path: str | Path, out_dir: str | Path, params: Params, *,
                progress: bool = False) -> Champion:
    """Fit the champion on the training period and write everything the later stages read."""
    train = read_table(train_path)
    y = train["label"].astype(int)
    with_excluded = snapshot_schema(train, params, keep_excluded=True)
    leaks = guard_leakage(train, y, with_excluded, declared=params.features.exclude,
                          allow=params.leakage.allow, settings=leakage_settings(params.leakage, params.seed))
    schema = snapshot_schema(train, params)
    X = prepare_features(train, schema)
    settings = make_settings(params)
    champion = build_champion(X, y, schema, settings, times=train["created_at"],
                              segment_column=params.segments.column,
                              min_positives=params.segments.min_positives, decision=params.decision,
                              leaks=leaks, progress=progress)
    out_dir = Path(out_dir)
    for child in ("champion", "candidates", "selection"):
        shutil.rmtree(out_dir / child, ignore_errors=True)
    base = _base_metadata(train, params, schema)
    save_bundle(ModelBundle(champion.scorer, schema, {**base, "model": champion.selection.champion,
                                                       **champion_metadata(champion)}),
                out_dir / "champion")
    _save_candidates(X, y, schema, champion, replace(settings, n_trials=0), out_dir, base)
    _save_selection(train, X, y, schema, champion, params, out_dir)
    log.info("champion %s (%s)", champion.selection.champion, champion.selection.weights)
    return champion


__all__ = ["train_stage"]
