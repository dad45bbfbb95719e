"""Compare candidate models with expanding-window cross-validation on the training period."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import TimeSeriesSplit

from leadscore.evaluation import classification_metrics
from leadscore.schema import TableSchema, prepare_features
from leadscore.training import fit_pipeline


def expanding_folds(times: pd.Series, n_folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Train on everything before each block of time, validate on the block (no look-ahead)."""
    order = np.argsort(times.to_numpy(), kind="stable")
    return [(order[train], order[valid]) for train, valid in TimeSeriesSplit(n_folds).split(order)]


def cross_validate(frame: pd.DataFrame, schema: TableSchema, candidates: Iterable[str], *,
                   label: str = "label", n_folds: int = 4,
                   params: Mapping[str, dict[str, Any]] | None = None,
                   seed: int = 42) -> pd.DataFrame:
    """One row per (candidate, fold): validation metrics and fit seconds."""
    X, y = prepare_features(frame, schema), frame[label].astype(int)
    rows = []
    for fold, (train, valid) in enumerate(expanding_folds(frame[schema.time_column], n_folds), 1):
        for name in candidates:
            started = time.perf_counter()
            model = fit_pipeline(name, schema, X.iloc[train], y.iloc[train],
                                 (params or {}).get(name), seed)
            seconds = time.perf_counter() - started
            prob = model.predict_proba(X.iloc[valid])[:, 1]
            rows.append({"model": name, "fold": fold, "train_rows": len(train),
                         "valid_rows": len(valid), "fit_seconds": round(seconds, 2),
                         **classification_metrics(y.iloc[valid], prob)})
    return pd.DataFrame(rows)


def summarize(folds: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over folds of the main metrics, best ROC-AUC first."""
    metrics = ["roc_auc", "pr_auc", "brier", "log_loss", "ece", "fit_seconds"]
    table = folds.groupby("model")[metrics].agg(["mean", "std"]).round(4)
    return table.sort_values(("roc_auc", "mean"), ascending=False)
