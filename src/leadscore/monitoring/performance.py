"""Realized performance: how well a model's scores ranked and priced the leads whose labels matured.

Per model version and period (week or month of scoring), optionally per segment: leads scored, labelled
and still open, conversion, ROC-AUC with a bootstrap interval, PR-AUC, Brier, ECE, top-decile conversion
and lift, and the top tier's conversion. Metrics need ``min_labelled`` labelled leads of both outcomes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from leadscore.core.exceptions import ConfigError, DataValidationError
from leadscore.evaluation.comparison import bootstrap_auc_ci
from leadscore.evaluation.curves import calibration_table
from leadscore.evaluation.metrics import classification_metrics

PERIODS = {"week": "W-SUN", "month": "M"}


def period_of(times: pd.Series, by: str) -> pd.Series:
    """The period each UTC time falls in, as its first day (``2025-06-02`` for that week or month)."""
    if by not in PERIODS:
        raise ConfigError(f"--by: expected one of {', '.join(PERIODS)}, got {by!r}")
    naive = pd.to_datetime(times, utc=True).dt.tz_localize(None)
    return naive.dt.to_period(PERIODS[by]).dt.start_time.dt.strftime("%Y-%m-%d")


def top_tier_mask(frame: pd.DataFrame, top_tier: str | None) -> pd.Series | None:
    """Which rows of ``frame`` the ``top_tier`` holds (None without a top tier or a ``tier`` column)."""
    return None if top_tier is None or "tier" not in frame else frame["tier"].astype(str).eq(top_tier)


def top_tier_outcome(labelled: pd.DataFrame, top_tier: str | None) -> tuple[int, float] | None:
    """Leads in the ``top_tier`` among ``labelled`` rows and their conversion (NaN when none)."""
    top = top_tier_mask(labelled, top_tier)
    if top is None:
        return None
    return int(top.sum()), float(labelled.loc[top, "label"].mean()) if top.any() else np.nan


def _metrics(part: pd.DataFrame, min_labelled: int, n_boot: int, seed: int,
             top_tier: str | None) -> dict[str, Any]:
    done = part[part["label"].notna()]
    y, p = done["label"].to_numpy(int), done["probability"].to_numpy(float)
    row: dict[str, Any] = {"leads": len(part), "labelled": len(done), "open": int(part["label"].isna().sum()),
                           "converted": int(y.sum()),
                           "conversion_rate": float(y.mean()) if len(y) else np.nan,
                           "mean_probability": float(p.mean()) if len(p) else np.nan}
    if len(y) < min_labelled or len(np.unique(y)) < 2:
        return {**row, "note": f"{len(y)} labelled, need {min_labelled} with both outcomes"}
    metrics = classification_metrics(y, p)
    low, high = bootstrap_auc_ci(y, p, n_boot=n_boot, seed=seed)
    row.update({k: metrics[k] for k in ("roc_auc", "pr_auc", "brier", "ece", "top_decile_rate",
                                        "top_decile_lift")},
               roc_auc_low=low, roc_auc_high=high, note="")
    top = top_tier_outcome(done, top_tier)
    if top is not None:
        row["top_tier_leads"], row["top_tier_rate"] = top
    return row


def realized_performance(labelled: pd.DataFrame, *, by: str = "month", segment: str | None = None,
                         min_labelled: int = 100, n_boot: int = 200, seed: int = 42,
                         top_tier: str | None = None) -> pd.DataFrame:
    """One row per model version and period (and segment value): see the module docstring.

    ``labelled`` comes from :func:`leadscore.monitoring.labels.label_scores`; ``top_tier`` names the
    highest tier, whose labelled leads' conversion is reported when the scores carry a ``tier``.
    """
    if segment is not None and segment not in labelled.columns:
        raise DataValidationError(f"segment column '{segment}' not found in the scored leads")
    frame = labelled.assign(period=period_of(labelled["scored_at"], by))
    keys = ["model_version", "period", *([segment] if segment else [])]
    if segment:
        frame[segment] = frame[segment].astype("object").where(frame[segment].notna(), "(missing)")
    rows = [{**dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True)),
             **_metrics(part, min_labelled, n_boot, seed, top_tier)}
            for key, part in frame.groupby(keys, sort=True)]
    return pd.DataFrame(rows)


def calibration_by_period(labelled: pd.DataFrame, *, by: str = "month", bins: int = 10,
                          min_labelled: int = 100) -> pd.DataFrame:
    """The calibration curve of each version's matured periods (no open lead: a maturing period knows its
    converters first): per equal-frequency bin, mean predicted probability, observed rate and count."""
    frame = labelled.assign(period=period_of(labelled["scored_at"], by))
    parts = []
    for (version, period), part in frame.groupby(["model_version", "period"], sort=True):
        if part["label"].isna().any() or len(part) < max(min_labelled, bins):
            continue
        table = calibration_table(part["label"], part["probability"], bins=bins)
        parts.append(table.assign(model_version=str(version), period=str(period),
                                  bin=range(1, len(table) + 1)))
    columns = ["model_version", "period", "bin", "predicted", "observed", "count"]
    return pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)
