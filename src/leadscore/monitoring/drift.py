"""Drift: how far the leads scored now are from the leads a model was trained on.

Each prepared feature of the scored leads is compared with the model's reference profile
(:mod:`leadscore.data.profile`, saved in its metadata at training time), so no training data is needed:

* **PSI** (population stability index) on the reference's bins: decile bins for numbers, one bin per known
  category plus one for categories never seen in training, and a bin for missing values in both cases.
  ``PSI = sum((actual - expected) * ln(actual / expected))`` with shares floored at 1e-4.
* **KS** for numbers: the largest gap between the scored values' distribution and the reference CDF
  (piecewise linear through its 51 quantiles), with scipy's one-sample test.
* the **share of unseen categories**, and the score's own PSI and predicted-positive rate.

A check's state is ``ok``, ``warn`` or ``alert`` by its PSI (thresholds in ``params.yaml``), or
``too few`` under the minimum number of rows. A PSI over a threshold must also be more than sampling noise:
for small differences ``n * PSI`` is Pearson's chi-square statistic of the period's counts against the
reference shares, so a period warns only when that statistic is significant at ``NOISE_P`` (with one
degree of freedom less than its bins). A high-cardinality column over a few hundred leads then stays quiet
unless it really moved.

:func:`drift_by_period` runs every check on each period's scored leads (the monitoring report, the
dashboard's heatmap, ``monitor drift`` and the checks of ``monitor check``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from leadscore.core.config import MonitoringParams
from leadscore.core.exceptions import DataValidationError, ModelNotFoundError
from leadscore.data.profile import OTHER, bin_shares, category_labels
from leadscore.data.schema import prepare_features
from leadscore.evaluation.tiers import saved_threshold
from leadscore.monitoring.performance import period_of

FLOOR = 1e-4
NOISE_P = 0.001
UNSEEN = "(unseen)"
MISSING = "(missing)"
OK, WARN, ALERT, TOO_FEW = "ok", "warn", "alert", "too few"


@dataclass(frozen=True)
class DriftThresholds:
    psi_warn: float = 0.10
    psi_alert: float = 0.25
    min_rows: int = 200

    @classmethod
    def from_settings(cls, settings: MonitoringParams) -> DriftThresholds:
        """The thresholds of ``params.yaml``'s monitoring section."""
        return cls(settings.psi_warn, settings.psi_alert, settings.min_rows)


DEFAULT_THRESHOLDS = DriftThresholds()


def psi(expected: np.ndarray, actual: np.ndarray, floor: float = FLOOR) -> float:
    """Population stability index of two share vectors over the same bins (each floored at ``floor``)."""
    e = np.maximum(np.asarray(expected, dtype=float), floor)
    a = np.maximum(np.asarray(actual, dtype=float), floor)
    return float(np.sum((a - e) * np.log(a / e)))


def _with_missing(shares: Any, missing: float) -> np.ndarray:
    return np.append(np.asarray(shares, dtype=float) * (1.0 - missing), missing)


def reference_cdf(quantiles: list[float]) -> Any:
    """The reference CDF as a function: linear between its quantiles, 0 below and 1 above."""
    points = np.asarray(quantiles, dtype=float)
    levels = np.linspace(0, 1, len(points))

    def cdf(x: np.ndarray) -> np.ndarray:
        return np.interp(x, points, levels, left=0.0, right=1.0)
    return cdf


def numeric_drift(reference: Mapping[str, Any], values: pd.Series) -> dict[str, Any]:
    """PSI over the reference bins (and missing), KS statistic and p-value, for numeric ``values``."""
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    present = numbers[np.isfinite(numbers)]
    missing = 1.0 - len(present) / max(len(numbers), 1)
    edges = np.asarray(reference["edges"], dtype=float)
    expected = _with_missing(reference["shares"], reference["missing"])
    actual = _with_missing(bin_shares(present, edges), missing)
    out: dict[str, Any] = {"psi": psi(expected, actual), "bins": len(expected), "missing": missing,
                           "reference_missing": reference["missing"], "ks": None, "ks_pvalue": None}
    if len(present) and reference.get("quantiles"):
        test = stats.kstest(present, reference_cdf(reference["quantiles"]), method="asymp")
        out.update(ks=float(test.statistic), ks_pvalue=float(test.pvalue))
    return out


def categorical_drift(reference: Mapping[str, Any], values: pd.Series) -> dict[str, Any]:
    """PSI over the reference categories, ``(other)``, unseen values and missing; the unseen share and
    the unseen values seen most."""
    labels = category_labels(values)
    missing = float(labels.isna().mean()) if len(labels) else 0.0
    present = labels.dropna()
    known = dict(reference["shares"])
    pooled = OTHER in known  # the reference pooled its rare values: unknown values may be among them
    mapped = present.where(present.isin(list(known)), OTHER if pooled else UNSEEN)
    unseen = present[~present.isin(list(known))]
    names = [*known, *([] if pooled else [UNSEEN])]
    expected = _with_missing([known.get(n, 0.0) for n in names], reference["missing"])
    counts = mapped.value_counts(normalize=True)
    actual = _with_missing([float(counts.get(n, 0.0)) for n in names], missing)
    top_unseen = unseen.value_counts().head(3)
    return {"psi": psi(expected, actual), "bins": len(expected), "missing": missing,
            "reference_missing": reference["missing"],
            "unseen_share": float(len(unseen) / max(len(present), 1)) if not pooled else None,
            "unseen_values": {str(k): int(v) for k, v in top_unseen.items()} if not pooled else {}}


def noise_pvalue(value: float, n: int, bins: int) -> float:
    """P-value of ``n * PSI`` as a chi-square statistic with ``bins - 1`` degrees of freedom: how likely
    a PSI this large is from sampling alone when nothing changed."""
    return float(stats.chi2.sf(n * value, max(bins - 1, 1)))


def _state(row: Mapping[str, Any], thresholds: DriftThresholds) -> str:
    value, n = row["psi"], row["n"]
    if n < thresholds.min_rows:
        return TOO_FEW
    if value < thresholds.psi_warn or row["noise_p"] >= NOISE_P:
        return OK
    return ALERT if value >= thresholds.psi_alert else WARN


def _reason(name: str, row: Mapping[str, Any], state: str, thresholds: DriftThresholds) -> str:
    if state == TOO_FEW:
        return f"{row['n']} rows, fewer than {thresholds.min_rows}: not judged"
    text = f"PSI {row['psi']:.3f}"
    if row["psi"] >= thresholds.psi_warn and row["noise_p"] >= NOISE_P:
        text += f" (within sampling noise for {row['n']:,} rows: p = {row['noise_p']:.2g})"
    if row.get("unseen_share"):
        shown = ", ".join(row.get("unseen_values") or {})
        text += f"; {row['unseen_share']:.1%} of values never seen in training ({shown})"
    if abs(row["missing"] - row["reference_missing"]) >= 0.05:
        text += f"; missing {row['reference_missing']:.1%} -> {row['missing']:.1%}"
    return text


def calendar_features(columns: list[str]) -> list[str]:
    """The month and day-of-week parts of date columns (``created__month``, ``created__dayofweek``):
    within a period they depend on which days the period covers, not on the leads."""
    return [c for c in columns if c.endswith(("__month", "__dayofweek"))]


def feature_drift(profile: Mapping[str, Any], features: pd.DataFrame,
                  thresholds: DriftThresholds = DEFAULT_THRESHOLDS,
                  ignore: tuple[str, ...] = ()) -> pd.DataFrame:
    """One row per profiled feature present in ``features`` (prepared model input), except ``ignore`` and
    :func:`calendar_features`: kind, n, PSI, KS, missing shares, unseen share, state and reason;
    the most drifted first.

    Raises
    ------
    DataValidationError
        If no profiled feature is among the columns.
    """
    reference = profile["features"]
    skipped = {*ignore, *calendar_features(list(reference))}
    common = [c for c in reference if c in features.columns and c not in skipped]
    if not common:
        raise DataValidationError("no feature of the model's reference profile is among the scored columns "
                                  f"(expected e.g. {', '.join(list(reference)[:5])})")
    rows = []
    for name in common:
        ref = reference[name]
        row = {"feature": name, "kind": ref["kind"], "n": int(len(features)),
               **(numeric_drift(ref, features[name]) if ref["kind"] == "numeric"
                  else categorical_drift(ref, features[name]))}
        row["noise_p"] = noise_pvalue(row["psi"], row["n"], row["bins"])
        row["state"] = _state(row, thresholds)
        row["reason"] = _reason(name, row, row["state"], thresholds)
        rows.append(row)
    table = pd.DataFrame(rows).sort_values("psi", ascending=False, kind="stable")
    return table.reset_index(drop=True)


def score_drift(profile: Mapping[str, Any], probabilities: np.ndarray, threshold: float,
                thresholds: DriftThresholds = DEFAULT_THRESHOLDS) -> dict[str, Any]:
    """PSI and KS of the scores against the out-of-fold scores of training, and the predicted-positive
    rate (share at or above ``threshold``) against training's."""
    values = np.asarray(probabilities, dtype=float)
    positive = float((values >= threshold).mean()) if len(values) else None
    row: dict[str, Any] = {"feature": "(score)", "kind": "score", "n": int(len(values)),
                           **numeric_drift(profile["score"], pd.Series(values)),
                           "predicted_positive_rate": positive,
                           "reference_positive_rate": profile.get("predicted_positive_rate")}
    row["noise_p"] = noise_pvalue(row["psi"], row["n"], row["bins"])
    row["state"] = _state(row, thresholds)
    row["reason"] = _reason("score", row, row["state"], thresholds)
    if row["state"] != TOO_FEW and row["reference_positive_rate"] is not None:
        row["reason"] += (f"; predicted positive {row['reference_positive_rate']:.1%} in training -> "
                          f"{row['predicted_positive_rate']:.1%}")
    return row


def worst_state(states: list[str]) -> str:
    """The most severe of ``states`` (``alert`` > ``warn`` > ``ok`` > ``too few``)."""
    order = [ALERT, WARN, OK, TOO_FEW]
    return next((s for s in order if s in states), TOO_FEW)


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
