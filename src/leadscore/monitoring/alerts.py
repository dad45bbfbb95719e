"""Alert states of the monitoring checks: one ``ok`` / ``warn`` / ``alert`` per check, with its reason.

Checks, for each model version, on its latest period that could be judged:

- ``drift``: each feature's drift (:mod:`.drift`), subject = the feature;
- ``score_drift``: the score distribution and predicted-positive rate;
- ``performance``: realized ROC-AUC of the latest matured period against the model's held-out ROC-AUC
  (``auc_drop_warn`` / ``auc_drop_alert`` relative drops, ``params.yaml``);
- ``estimated_performance``: the same on the estimate of the latest period with open leads; it alerts
  only when the whole interval lies below the alert line, and warns when the estimate does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from leadscore.core.config import MonitoringParams
from leadscore.monitoring.drift import ALERT, OK, TOO_FEW, WARN

LEVELS = {OK: 0, WARN: 1, ALERT: 2}


@dataclass(frozen=True)
class CheckState:
    """One check's verdict on one subject of one model version's latest judged period."""

    check: str
    model_version: str
    subject: str
    period: str
    state: str
    reason: str
    value: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def baseline_auc(meta: Mapping[str, Any]) -> float | None:
    """The model's held-out ROC-AUC (test period or validation), the reference of performance checks."""
    held_out = (meta.get("holdout") or {}).get("metrics") or meta.get("test_metrics")
    auc = (held_out or {}).get("roc_auc")
    return float(auc) if isinstance(auc, int | float) else None


def drift_states(results: Iterable[Mapping[str, Any]]) -> list[CheckState]:
    """Feature and score states of each version's latest period with enough leads to judge."""
    latest: dict[str, Mapping[str, Any]] = {}
    for result in results:
        if result["score"]["state"] != TOO_FEW:
            previous = latest.get(result["model_version"])
            if previous is None or result["period"] > previous["period"]:
                latest[result["model_version"]] = result
    states: list[CheckState] = []
    for version, result in sorted(latest.items()):
        for row in result["features"]:
            if row["state"] != TOO_FEW:
                states.append(CheckState("drift", version, str(row["feature"]), result["period"],
                                         row["state"], row["reason"], _number(row.get("psi"))))
        score = result["score"]
        states.append(CheckState("score_drift", version, "score", result["period"], score["state"],
                                 score["reason"], _number(score.get("psi"))))
    return states


def _number(value: Any) -> float | None:
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else float(value)


def _relative(value: float, baseline: float) -> str:
    drop = 1 - value / baseline
    return f"{abs(drop):.1%} {'below' if drop > 0 else 'above'}"


def _drop_state(value: float, baseline: float, settings: MonitoringParams) -> str:
    drop = 1 - value / baseline
    return ALERT if drop >= settings.auc_drop_alert else WARN if drop >= settings.auc_drop_warn else OK


def performance_states(table: pd.DataFrame, baselines: Mapping[str, float | None],
                       settings: MonitoringParams) -> list[CheckState]:
    """Realized ROC-AUC of each version's latest matured period (no open lead left: a period still
    maturing knows its converters before its non-converters) that has one, against its baseline."""
    states: list[CheckState] = []
    if table.empty or "roc_auc" not in table:
        return states
    matured = table[table["open"] == 0] if "open" in table else table
    for version, part in matured.dropna(subset=["roc_auc"]).groupby("model_version", sort=True):
        baseline = baselines.get(str(version))
        if baseline is None:
            continue
        row = part.sort_values("period").iloc[-1]
        auc = float(row["roc_auc"])
        state = _drop_state(auc, baseline, settings)
        states.append(CheckState(
            "performance", str(version), "roc_auc", str(row["period"]), state,
            f"realized ROC-AUC {auc:.3f} (95% CI {row['roc_auc_low']:.3f}-{row['roc_auc_high']:.3f}, "
            f"{int(row['labelled']):,} labelled) vs {baseline:.3f} held out: {_relative(auc, baseline)}",
            auc))
    return states


def estimate_states(table: pd.DataFrame, baselines: Mapping[str, float | None],
                    settings: MonitoringParams) -> list[CheckState]:
    """Estimated ROC-AUC of each version's latest period with open leads, against its baseline."""
    states: list[CheckState] = []
    if table.empty:
        return states
    open_periods = table[(table["open"] > 0)].dropna(subset=["est_roc_auc"])
    for version, part in open_periods.groupby("model_version", sort=True):
        baseline = baselines.get(str(version))
        if baseline is None:
            continue
        row = part.sort_values("period").iloc[-1]
        est, high = float(row["est_roc_auc"]), float(row["est_roc_auc_high"])
        state = ALERT if _drop_state(high, baseline, settings) == ALERT else \
            (WARN if _drop_state(est, baseline, settings) != OK else OK)
        states.append(CheckState(
            "estimated_performance", str(version), "roc_auc", str(row["period"]), state,
            f"estimated ROC-AUC {est:.3f} (95% interval {row['est_roc_auc_low']:.3f}-{high:.3f}, "
            f"{int(row['open']):,} open leads) vs {baseline:.3f} held out: {_relative(est, baseline)}", est))
    return states


def overall_state(states: Iterable[CheckState]) -> str:
    """The most severe state (``ok`` when there is none)."""
    worst = max((LEVELS.get(s.state, 0) for s in states), default=0)
    return next(name for name, level in LEVELS.items() if level == worst)


def raised(states: Iterable[CheckState]) -> list[CheckState]:
    """The states that are not ``ok``, most severe first."""
    return sorted((s for s in states if s.state in (WARN, ALERT)),
                  key=lambda s: (-LEVELS[s.state], s.check, s.model_version, s.subject))


def first_alerts(drift: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """For every feature (and the score) that reached ``alert``: the first period it did, with its
    reason there, in order of that period."""
    first: dict[tuple[str, str], dict[str, Any]] = {}
    for result in sorted(drift, key=lambda r: r["period"]):
        for row in [*result["features"], result["score"]]:
            key = (result["model_version"], str(row["feature"]))
            if row["state"] == ALERT and key not in first:
                first[key] = {"model_version": key[0], "feature": key[1], "period": result["period"],
                              "psi": _number(row.get("psi")), "reason": row["reason"]}
    return sorted(first.values(), key=lambda r: (r["period"], -(r["psi"] or 0)))
