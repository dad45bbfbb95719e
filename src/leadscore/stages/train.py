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

from leadscore.artifacts.bundle import ModelBundle, save_bundle
from leadscore.artifacts.paths import CANDIDATES_DIR, CHAMPION_DIR, SELECTION_DIR, train_outputs
from leadscore.core.config import Params
from leadscore.data.tables import read_table, write_table
from leadscore.modeling.ensemble import LeadModel
from leadscore.training.build import BuiltModel, snapshot_bundle
from leadscore.training.clusters import lead_clusters
from leadscore.training.selection import SelectionSettings, build_estimator

log = logging.getLogger(__name__)


def _save_candidates(X: pd.DataFrame, y: pd.Series, schema: Any, champion: BuiltModel,
                     settings: SelectionSettings, out_dir: Path, base: dict[str, Any]) -> None:
    """Every candidate refitted on the whole training period, uncalibrated, for the test comparison."""
    for name, result in champion.selection.candidates.items():
        members = champion.selection.model.members
        member = members[name] if name in members else \
            build_estimator(name, schema, result.params, settings).fit(X, y)
        save_bundle(ModelBundle(LeadModel({name: member}, {name: 1.0}), schema,
                                {**base, "model": name, "params": result.params,
                                 "cv_metrics": result.metrics}), out_dir / name)


def _save_selection(train: pd.DataFrame, X: pd.DataFrame, y: pd.Series, schema: Any, champion: BuiltModel,
                    params: Params, out_dir: Path) -> None:
    selection = champion.selection
    oof = pd.DataFrame({"lead_id": train["lead_id"], "created_at": train["created_at"], "label": y,
                        "covered": selection.covered})
    for name, result in selection.candidates.items():
        oof[name] = result.oof
    oof["champion"] = selection.champion_oof()
    folder = out_dir
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
                progress: bool = False) -> BuiltModel:
    """Fit the champion on the training period and write everything the later stages read."""
    train = read_table(train_path)
    y = train["label"].astype(int)
    trained, bundle = snapshot_bundle(train, params, progress=progress)
    champion, schema, base = trained.champion, bundle.schema, bundle.metadata
    outputs = train_outputs(out_dir)
    for folder in outputs.values():
        shutil.rmtree(folder, ignore_errors=True)
    save_bundle(bundle, outputs[CHAMPION_DIR])
    _save_candidates(trained.X, y, schema, champion, replace(trained.settings, n_trials=0),
                     outputs[CANDIDATES_DIR], base)
    _save_selection(train, trained.X, y, schema, champion, params, outputs[SELECTION_DIR])
    log.info("champion %s (%s)", champion.selection.champion, champion.selection.weights)
    return champion


__all__ = ["train_stage"]
