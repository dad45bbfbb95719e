"""Monitoring checks over periods: drift of each period's scored leads against the model's profile."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from leadscore.core.exceptions import ModelNotFoundError
from leadscore.data.schema import prepare_features
from leadscore.evaluation.decision import saved_threshold
from leadscore.monitoring.drift import (
    DEFAULT_THRESHOLDS,
    DriftThresholds,
    feature_drift,
    score_drift,
    worst_state,
)
from leadscore.monitoring.performance import period_of


def reference_of(meta: Mapping[str, Any], version: str) -> Mapping[str, Any]:
    """The reference profile saved with a model version.

    Raises
    ------
    ModelNotFoundError
        If the version was trained before profiles were saved.
    """
    profile = meta.get("reference")
    if not profile:
        raise ModelNotFoundError(f"model version {version} has no reference profile (trained by an earlier "
                                 "release): retrain it (`dvc repro` or `leadscore fit`) to monitor drift")
    return profile


def drift_by_period(leads: pd.DataFrame, bundle: Any, version: str, *, times: pd.Series | None,
                    probabilities: np.ndarray | None = None, by: str = "month",
                    thresholds: DriftThresholds = DEFAULT_THRESHOLDS,
                    ignore: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Per period of ``times`` (one period when None): every feature's drift, the score's, the worst
    state. ``leads`` are raw rows as scored; ``probabilities`` their scores (computed when None)."""
    profile = reference_of(bundle.metadata, version)
    features = prepare_features(leads, bundle.schema)
    if probabilities is None:
        probabilities = bundle.model.predict_proba(features)[:, 1]
    threshold = saved_threshold(bundle.metadata)
    periods = period_of(times, by) if times is not None else pd.Series("all", index=leads.index)
    out = []
    for period in sorted(periods.unique()):
        mask = (periods == period).to_numpy()
        table = feature_drift(profile, features.loc[mask], thresholds, ignore)
        score = score_drift(profile, np.asarray(probabilities)[mask], threshold, thresholds)
        states = [*table["state"], score["state"]]
        out.append({"model_version": version, "period": period, "n": int(mask.sum()),
                    "state": worst_state(states), "score": score, "features": table.to_dict("records")})
    return out
