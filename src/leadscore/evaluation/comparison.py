"""Comparing models on the same leads: bootstrap intervals, the comparison table, improvement over
baselines.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from leadscore.core.exceptions import DataValidationError
from leadscore.evaluation.metrics import METRICS, classification_metrics, get_metric
from leadscore.evaluation.tiers import threshold_metrics

BASELINES = ("rules", "logistic")


def bootstrap_ci(y_true: Any, prob: Any, metrics: tuple[str, ...] = ("roc_auc", "pr_auc", "brier"),
                 n_boot: int = 200, seed: int = 42, level: float = 0.95) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap confidence intervals of metrics (rows resampled with replacement)."""
    y, p = np.asarray(y_true, int), np.asarray(prob, float)
    rng = np.random.default_rng(seed)
    funcs = {m: get_metric(m) for m in metrics}
    draws: dict[str, list[float]] = {m: [] for m in metrics}
    for _ in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        if y[idx].min() == y[idx].max():
            continue
        for m in metrics:
            draws[m].append(funcs[m](y[idx], np.clip(p[idx], 1e-7, 1 - 1e-7) if m == "log_loss" else p[idx]))
    tail = (1 - level) / 2 * 100
    return {m: (round(float(np.percentile(v, tail)), 4), round(float(np.percentile(v, 100 - tail)), 4))
            for m, v in draws.items() if v}


def weighted_auc_sorted(y: np.ndarray, group: np.ndarray, weights: np.ndarray, n_groups: int) -> float:
    """ROC-AUC of rows sorted by score, each counted ``weights`` times; ``group`` numbers the distinct
    scores in ascending order (ties share a group and count half)."""
    pos = np.bincount(group, weights=weights * y, minlength=n_groups)
    neg = np.bincount(group, weights=weights * (1 - y), minlength=n_groups)
    below = np.cumsum(neg) - neg
    return float(np.sum(pos * (below + 0.5 * neg)) / (pos.sum() * neg.sum()))


def bootstrap_auc_ci(y_true: Any, prob: Any, n_boot: int = 200, seed: int = 42,
                     level: float = 0.95) -> tuple[float, float]:
    """The ROC-AUC interval of :func:`bootstrap_ci`, from the same resamples, in O(n) per resample.

    Rows are sorted once; a resample is then only a count per row, so monitoring can afford intervals
    on every week of a million scored leads.
    """
    y, p = np.asarray(y_true, int), np.asarray(prob, float)
    order = np.argsort(p, kind="stable")
    y_sorted, p_sorted = y[order], p[order]
    group = np.concatenate([[0], np.cumsum(p_sorted[1:] != p_sorted[:-1])])
    rank_of = np.empty(len(y), dtype=np.int64)
    rank_of[order] = np.arange(len(y))
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        if y[idx].min() == y[idx].max():
            continue
        weights = np.bincount(rank_of[idx], minlength=len(y)).astype(float)
        draws.append(weighted_auc_sorted(y_sorted, group, weights, int(group[-1]) + 1))
    tail = (1 - level) / 2 * 100
    return (round(float(np.percentile(draws, tail)), 4), round(float(np.percentile(draws, 100 - tail)), 4))


def comparison_table(y_true: Any, probs: dict[str, Any], threshold: float, *,
                     seconds: dict[str, float] | None = None, n_boot: int = 200,
                     seed: int = 42) -> pd.DataFrame:
    """One row per model: ranking, calibration and threshold metrics with 95% bootstrap intervals."""
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


def improvement(metrics: dict[str, dict[str, float]],
                champion: str = "champion") -> dict[str, dict[str, float]]:
    """Relative improvement (%) of the champion over each baseline present, for ROC-AUC and PR-AUC;
    for Brier and log loss, the relative reduction."""
    out: dict[str, dict[str, float]] = {}
    for base in BASELINES:
        if base not in metrics:
            continue
        row = {}
        for key in ("roc_auc", "pr_auc", "brier", "log_loss"):
            ratio = metrics[champion][key] / metrics[base][key]
            row[key] = round(100 * (ratio - 1 if METRICS[key].higher_is_better else 1 - ratio), 2)
        out[f"vs_{base}"] = row
    return out


def delong_roc_test(y_true: Any, prob_a: Any, prob_b: Any) -> dict[str, float]:
    """DeLong's test of two correlated ROC-AUCs on the same leads (DeLong, DeLong & Clarke-Pearson 1988,
    in the O(n log n) form of Sun & Xu 2014): both AUCs, ``diff`` = b - a, its standard error, z, the
    two-sided p-value and the one-sided p-value that b is better.

    Raises
    ------
    DataValidationError
        Without both outcomes among the leads.
    """
    from scipy.stats import norm, rankdata

    y = np.asarray(y_true, int)
    scores = np.vstack([np.asarray(prob_a, float), np.asarray(prob_b, float)])
    order = np.argsort(-y, kind="stable")          # positives first
    m = int(y.sum())
    n = len(y) - m
    if m == 0 or n == 0:
        raise DataValidationError("DeLong's test needs both converters and non-converters")
    ranked = scores[:, order]
    pos, neg = ranked[:, :m], ranked[:, m:]
    tx = np.vstack([rankdata(row) for row in pos])
    ty = np.vstack([rankdata(row) for row in neg])
    tz = np.vstack([rankdata(row) for row in ranked])
    aucs = tz[:, :m].sum(axis=1) / m / n - (m + 1.0) / (2.0 * n)
    v01 = (tz[:, :m] - tx) / n                     # per converter: share of non-converters ranked below
    v10 = 1.0 - (tz[:, m:] - ty) / m               # per non-converter: share of converters ranked above
    cov = np.atleast_2d(np.cov(v01)) / m + np.atleast_2d(np.cov(v10)) / n
    variance = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    diff = float(aucs[1] - aucs[0])
    se = float(np.sqrt(max(variance, 0.0)))
    z = diff / se if se > 0 else (0.0 if diff == 0 else np.copysign(np.inf, diff))
    return {"auc_a": float(aucs[0]), "auc_b": float(aucs[1]), "diff": diff, "se": se, "z": float(z),
            "p_value": float(2 * norm.sf(abs(z))), "p_better": float(norm.sf(z)),
            "var_a": float(cov[0, 0]), "var_b": float(cov[1, 1])}
