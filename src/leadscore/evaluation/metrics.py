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


def feature_importance(model: Any) -> pd.Series:
    """Importance per input feature (shares summing to 1), one-hot levels summed back to their column.

    Tree models: total split gain (LightGBM) or impurity/gain importances; linear models: |coefficient|
    on standardised inputs. Ensembles and segmented models: members weighted by their ensemble weight.
    """
    model = getattr(model, "global_model", model)
    members = getattr(model, "members", None)
    if members:
        weights = getattr(model, "weights", {})
        parts = [weights.get(n, 0) * _pipeline_importance(m) for n, m in members.items()
                 if _has_importance(m)]
        series = pd.concat(parts, axis=1).fillna(0).sum(axis=1) if parts else pd.Series(dtype=float)
    else:
        series = _pipeline_importance(model)
    total = series.sum()
    return (series / total if total else series).sort_values(ascending=False).round(5)


def _has_importance(pipeline: Any) -> bool:
    clf = pipeline[-1] if hasattr(pipeline, "steps") else None
    return clf is not None and any(hasattr(clf, a) for a in ("booster_", "feature_importances_", "coef_"))


def _pipeline_importance(pipeline: Any) -> pd.Series:
    prep, model = pipeline[0], pipeline[-1]
    names = prep.get_feature_names_out()
    if hasattr(model, "booster_"):
        values = model.booster_.feature_importance(importance_type="gain")
    elif hasattr(model, "feature_importances_"):
        values = np.asarray(model.feature_importances_, float)
    else:
        values = np.abs(np.ravel(model.coef_))
    columns = _source_columns(prep, names)
    series = pd.Series(values, index=columns, dtype=float).groupby(level=0).sum()
    return series / series.sum() if series.sum() else series


def _source_columns(prep: Any, names: np.ndarray) -> list[str]:
    """Map transformed column names (``num__x``, ``cat__source_web``) back to input columns."""
    inputs = sorted((c for _, _, cols in prep.transformers_ if isinstance(cols, list) for c in cols),
                    key=len, reverse=True)
    result = []
    for name in names:
        bare = str(name).split("__", 1)[-1].removeprefix("missingindicator_")
        result.append(next((c for c in inputs if bare == c or bare.startswith(c + "_")), bare))
    return result


def bootstrap_ci(y_true: Any, prob: Any, metrics: tuple[str, ...] = ("roc_auc", "pr_auc", "brier"),
                 n_boot: int = 200, seed: int = 42, level: float = 0.95) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap confidence intervals of metrics (rows resampled with replacement)."""
    y, p = np.asarray(y_true, int), np.asarray(prob, float)
    rng = np.random.default_rng(seed)
    funcs = {"roc_auc": roc_auc_score, "pr_auc": average_precision_score, "brier": brier_score_loss,
             "log_loss": lambda a, b: log_loss(a, np.clip(b, 1e-7, 1 - 1e-7), labels=[0, 1])}
    draws: dict[str, list[float]] = {m: [] for m in metrics}
    for _ in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        if y[idx].min() == y[idx].max():
            continue
        for m in metrics:
            draws[m].append(float(funcs[m](y[idx], p[idx])))
    tail = (1 - level) / 2 * 100
    return {m: (round(float(np.percentile(v, tail)), 4), round(float(np.percentile(v, 100 - tail)), 4))
            for m, v in draws.items() if v}


def comparison_table(y_true: Any, probs: dict[str, Any], threshold: float, *,
                     seconds: dict[str, float] | None = None, n_boot: int = 200,
                     seed: int = 42) -> pd.DataFrame:
    """One row per model: ranking, calibration and threshold metrics with 95% bootstrap intervals."""
    from leadscore.evaluation.decision import threshold_metrics

    rows = []
    for name, prob in probs.items():
        y, p = np.asarray(y_true, int), np.asarray(prob, float)
        row: dict[str, Any] = {"model": name, **classification_metrics(y, p)}
        row.update(threshold_metrics(p, y, threshold))
        for metric, (low, high) in bootstrap_ci(y, p, n_boot=n_boot, seed=seed).items():
            row[f"{metric}_ci"] = f"[{low:.3f}, {high:.3f}]"
        if seconds:
            row["fit_seconds"] = seconds.get(name, np.nan)
        rows.append(row)
    return pd.DataFrame(rows).set_index("model")
