"""Deciding per segment (e.g. per vertical) between its own model and the global model.

A segment gets its own model only when it has enough positives and its own model beats the global model
on the same out-of-fold rows; otherwise its leads are scored by the global model. The choice is reported.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from leadscore.data.schema import TableSchema
from leadscore.evaluation.metrics import better, classification_metrics
from leadscore.modeling.calibration import choose_calibration
from leadscore.modeling.candidates import make_model
from leadscore.modeling.ensemble import LeadModel
from leadscore.modeling.segments import SegmentedModel
from leadscore.training.selection import Folds, SelectionResult, SelectionSettings


@dataclass(frozen=True)
class SegmentReport:
    column: str
    table: pd.DataFrame          # per segment: rows, positives, global/segment metric, choice, reason


def _segment_oof(name: str, params: Mapping[str, Any], schema: TableSchema, X: pd.DataFrame, y: pd.Series,
                 rows: np.ndarray, folds: Folds, seed: int) -> np.ndarray:
    """Out-of-fold predictions for the segment's rows, trained on the segment's rows of each fold."""
    estimator = make_model(name, schema, dict(params), seed)
    oof = np.full(len(y), np.nan)
    for train, valid in folds:
        tr, va = train[rows[train]], valid[rows[valid]]
        if len(va) == 0 or y.iloc[tr].nunique() < 2:
            continue
        oof[va] = clone(estimator).fit(X.iloc[tr], y.iloc[tr]).predict_proba(X.iloc[va])[:, 1]
    return oof


def fit_segments(X: pd.DataFrame, y: pd.Series, schema: TableSchema, selection: SelectionResult,
                 settings: SelectionSettings, folds: Folds, *, column: str, min_positives: int = 200,
                 times: pd.Series | None = None) -> tuple[Any, SegmentReport]:
    """Decide per segment between its own model and the global one; return the scorer and the report."""
    X, y = X.reset_index(drop=True), y.reset_index(drop=True).astype(int)
    best = max(selection.weights, key=lambda n: selection.weights[n])  # the main member's family
    params = selection.candidates[best].params
    global_oof = selection.champion_oof()
    rows_out, models = [], {}
    values: list[Any] = list(X[column].dropna().unique()) if column in X.columns else []
    for value in sorted(values, key=str):
        rows = (X[column] == value).to_numpy()
        positives = int(y[rows].sum())
        row: dict[str, Any] = {"segment": value, "rows": int(rows.sum()), "positives": positives}
        if positives < min_positives:
            rows_out.append({**row, "choice": "global", "reason": f"fewer than {min_positives} positives"})
            continue
        oof = _segment_oof(best, params, schema, X, y, rows, folds, settings.seed)
        seen = rows & ~np.isnan(oof) & ~np.isnan(global_oof)
        if y[seen].nunique() < 2:
            rows_out.append({**row, "choice": "global", "reason": "no validation rows of both classes"})
            continue
        order = None if times is None else times.reset_index(drop=True)[seen].to_numpy()
        calibration = choose_calibration(oof[seen], y[seen].to_numpy(), order=order,
                                         methods=settings.calibration_methods, seed=settings.seed)
        own = classification_metrics(y[seen], calibration.calibrator.transform(oof[seen]))[settings.metric]
        shared = classification_metrics(y[seen], global_oof[seen])[settings.metric]
        wins = better(settings.metric, own, shared)
        row.update({f"global_{settings.metric}": round(shared, 4),
                    f"segment_{settings.metric}": round(own, 4),
                    "choice": "segment" if wins else "global",
                    "reason": "own model better on validation" if wins else "global model as good or better"})
        rows_out.append(row)
        if wins:
            member = make_model(best, schema, dict(params), settings.seed).fit(X[rows], y[rows])
            models[value] = LeadModel({best: member}, {best: 1.0}, calibration.calibrator)
    report = SegmentReport(column, pd.DataFrame(rows_out))
    if not models:
        return selection.model, report
    return SegmentedModel(column, selection.model, models), report
