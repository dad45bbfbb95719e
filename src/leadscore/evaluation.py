"""Metrics and the data behind ROC, precision-recall and calibration plots."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

CURVE_POINTS = 200  # curves are thinned to about this many points for plots and DVC


def expected_calibration_error(y_true: np.ndarray, prob: np.ndarray, bins: int = 10) -> float:
    """Weighted mean |observed rate - mean predicted| over equal-width probability bins."""
    y_true, prob = np.asarray(y_true, float), np.asarray(prob, float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(prob, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.sum() * abs(y_true[mask].mean() - prob[mask].mean())
    return float(total / len(prob))


def classification_metrics(y_true: Any, prob: Any, bins: int = 10) -> dict[str, float]:
    """ROC-AUC, PR-AUC (average precision), Brier score, log loss, ECE, top-decile lift."""
    y, p = np.asarray(y_true, dtype=int), np.clip(np.asarray(prob, dtype=float), 1e-7, 1 - 1e-7)
    top = p >= np.quantile(p, 0.9)
    base = float(y.mean())
    return {
        "n": int(len(y)),
        "positive_rate": round(base, 6),
        "roc_auc": round(float(roc_auc_score(y, p)), 6),
        "pr_auc": round(float(average_precision_score(y, p)), 6),
        "brier": round(float(brier_score_loss(y, p)), 6),
        "log_loss": round(float(log_loss(y, p, labels=[0, 1])), 6),
        "ece": round(expected_calibration_error(y, p, bins), 6),
        "top_decile_rate": round(float(y[top].mean()), 6),
        "top_decile_lift": round(float(y[top].mean() / base), 4) if base > 0 else float("nan"),
    }


def _thin(frame: pd.DataFrame) -> pd.DataFrame:
    if len(frame) <= CURVE_POINTS:
        return frame
    keep = np.unique(np.linspace(0, len(frame) - 1, CURVE_POINTS).round().astype(int))
    return frame.iloc[keep].reset_index(drop=True)


def roc_points(y_true: Any, prob: Any) -> pd.DataFrame:
    fpr, tpr, _ = roc_curve(y_true, prob)
    return _thin(pd.DataFrame({"fpr": fpr.round(5), "tpr": tpr.round(5)}))


def pr_points(y_true: Any, prob: Any) -> pd.DataFrame:
    precision, recall, _ = precision_recall_curve(y_true, prob)
    frame = pd.DataFrame({"recall": recall.round(5), "precision": precision.round(5)})
    return _thin(frame.iloc[::-1].reset_index(drop=True))


def calibration_table(y_true: Any, prob: Any, bins: int = 10,
                      truth: Any | None = None) -> pd.DataFrame:
    """Per equal-frequency bin: mean predicted probability, observed rate (and mean true probability)."""
    frame = pd.DataFrame({"y": np.asarray(y_true, float), "p": np.asarray(prob, float)})
    if truth is not None:
        frame["truth"] = np.asarray(truth, float)
    frame["bin"] = pd.qcut(frame["p"].rank(method="first"), bins, labels=False)
    grouped = frame.groupby("bin")
    table = pd.DataFrame({
        "predicted": grouped["p"].mean().round(5),
        "observed": grouped["y"].mean().round(5),
        "count": grouped.size(),
    })
    if truth is not None:
        table["true_probability"] = grouped["truth"].mean().round(5)
    return table.reset_index(drop=True)


def feature_importance(pipeline: Any) -> pd.Series:
    """Importance per input feature, one-hot levels summed back to their column, largest first.

    LightGBM: total split gain; linear models: |coefficient| on the standardised inputs.
    """
    prep, model = pipeline.named_steps["prep"], pipeline.named_steps["model"]
    names = prep.get_feature_names_out()
    if hasattr(model, "booster_"):
        values = model.booster_.feature_importance(importance_type="gain")
    else:
        values = np.abs(np.ravel(model.coef_))
    columns = _source_columns(prep, names)
    series = pd.Series(values, index=columns, dtype=float).groupby(level=0).sum()
    return (series / series.sum()).sort_values(ascending=False).round(5)


def _source_columns(prep: Any, names: np.ndarray) -> list[str]:
    """Map transformed column names (``num__x``, ``cat__source_web``) back to input columns."""
    inputs = sorted((c for _, _, cols in prep.transformers_ if isinstance(cols, list) for c in cols),
                    key=len, reverse=True)
    result = []
    for name in names:
        bare = str(name).split("__", 1)[-1].removeprefix("missingindicator_")
        result.append(next((c for c in inputs if bare == c or bare.startswith(c + "_")), bare))
    return result
