"""A reference profile of the training data, small enough for a model's metadata.

Drift monitoring compares what a model scores today with what it was trained on, without the training
data: each prepared feature is summarised here once, at training time. Numeric features keep their decile
edges with the share of rows in each bin, and 51 quantiles (a piecewise-linear CDF for the KS test);
categorical features keep the share of each value (the 50 most frequent, the rest pooled). Both keep
their missing share. The model's own scores are profiled the same way, from out-of-fold predictions.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from leadscore.core.jsonsafe import json_safe

BINS = 10
QUANTILES = 51
TOP_CATEGORIES = 50
OTHER = "(other)"
PROFILE_VERSION = 1


def bin_shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of ``values`` in each of ``len(edges) + 1`` bins: below the first edge, between edges
    (right-closed), above the last."""
    if len(values) == 0:
        return np.zeros(len(edges) + 1)
    counts = np.bincount(np.searchsorted(edges, values, side="left"), minlength=len(edges) + 1)
    return counts / len(values)


def numeric_profile(values: pd.Series, bins: int = BINS) -> dict[str, Any]:
    """Missing share, inner decile edges with each bin's share, and quantiles of the non-missing values."""
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    present = numbers[np.isfinite(numbers)]
    missing = 1.0 - len(present) / max(len(numbers), 1)
    if len(present) == 0:
        return {"kind": "numeric", "missing": missing, "edges": [], "shares": [1.0], "quantiles": []}
    edges = np.unique(np.quantile(present, np.linspace(0, 1, bins + 1)[1:-1]))
    return {"kind": "numeric", "missing": missing, "edges": edges.tolist(),
            "shares": bin_shares(present, edges).tolist(),
            "quantiles": np.quantile(present, np.linspace(0, 1, QUANTILES)).tolist(), "n": len(present)}


def category_labels(values: pd.Series) -> pd.Series:
    """Values as text, missing as NaN (how profiles and drift checks compare categories)."""
    return values.astype(str).astype("object").where(values.notna())


def categorical_profile(values: pd.Series, top: int = TOP_CATEGORIES) -> dict[str, Any]:
    """Missing share and the share of each of the ``top`` most frequent values (the rest as ``(other)``)."""
    labels = category_labels(values)
    missing = float(labels.isna().mean()) if len(labels) else 0.0
    present = labels.dropna()
    shares = present.value_counts(normalize=True)
    kept = shares.head(top)
    profile = {str(k): float(v) for k, v in kept.items()}
    if len(shares) > top:
        profile[OTHER] = float(shares.iloc[top:].sum())
    return {"kind": "categorical", "missing": missing, "shares": profile, "n": int(len(present))}


def table_profile(frame: pd.DataFrame, categorical: Iterable[str], *, scores: np.ndarray | None = None,
                  threshold: float | None = None) -> dict[str, Any]:
    """The reference profile of prepared features ``frame``; ``scores`` are the model's out-of-fold
    probabilities on the same rows (their distribution and the share at or above ``threshold``)."""
    categorical = set(categorical)
    features = {str(c): categorical_profile(frame[c]) if c in categorical else numeric_profile(frame[c])
                for c in frame.columns}
    profile: dict[str, Any] = {"version": PROFILE_VERSION, "rows": int(len(frame)), "features": features}
    if scores is not None:
        values = np.asarray(scores, dtype=float)
        profile["score"] = numeric_profile(pd.Series(values))
        if threshold is not None:
            profile["predicted_positive_rate"] = float((values >= threshold).mean())
    return json_safe(profile)
