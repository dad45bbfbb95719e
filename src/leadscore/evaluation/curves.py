"""The data behind ROC, precision-recall and calibration plots (thinned for plots and DVC)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_curve, roc_curve

CURVE_POINTS = 200  # curves are thinned to about this many points for plots and DVC


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
