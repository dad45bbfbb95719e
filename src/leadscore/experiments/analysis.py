"""One call that reads an A/B experiment on lead conversion: rates, lift, sample ratio, always-valid
sequential test, power, CUPED, time to conversion, revenue and the recommendation."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import mannwhitneyu, ttest_ind

from leadscore.core.exceptions import ConfigError
from leadscore.core.jsonsafe import json_safe
from leadscore.experiments.cuped import Adjusted, cuped_lift
from leadscore.experiments.proportions import (
    ArmRate,
    Lift,
    achieved_power,
    arm_rate,
    check_alpha,
    required_sample_size,
    two_proportion_lift,
)
from leadscore.experiments.recommendation import Recommendation, recommend
from leadscore.experiments.sequential import check_leads, default_tau2, sequential_looks
from leadscore.experiments.srm import SampleRatio, sample_ratio_check

FALLBACK_BASE_RATE = 0.1  # planning rate while the control arm has no leads
NAN = float("nan")


@dataclass(frozen=True)
class TimeToConversion:
    """Median days from assignment to conversion among each arm's converters (NaN without any), and
    the two-sided Mann-Whitney U p-value of the difference (NaN unless both arms have converters)."""

    median_days_control: float
    median_days_treatment: float
    converters_control: int
    converters_treatment: int
    p_value: float


@dataclass(frozen=True)
class RevenuePerLead:
    """Mean revenue per lead in each arm (non-converters count as 0), treatment - control difference
    with its (1 - alpha) Welch interval, and the Welch t-test."""

    mean_control: float
    mean_treatment: float
    diff: float
    low: float
    high: float
    t: float
    p_value: float


@dataclass(frozen=True)
class ExperimentAnalysis:
    """Everything :func:`analyse` found; ``to_dict`` gives strict JSON-safe values."""

    arms: tuple[ArmRate, ArmRate]
    lift: Lift
    srm: SampleRatio
    sequential_p_value: float
    sequential_low: float
    sequential_high: float
    tau2: float
    power: float
    required_total: int
    base_rate: float
    days_run: float
    cuped: Adjusted | None
    time_to_conversion: TimeToConversion | None
    revenue: RevenuePerLead | None
    recommendation: Recommendation
    looks: pd.DataFrame = field(compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON: no NaN (None instead), no NumPy types, days as ISO text."""
        out = {key: getattr(self, key) for key in (
            "sequential_p_value", "sequential_low", "sequential_high", "tau2", "power", "required_total",
            "base_rate", "days_run")}
        out["arms"] = [arm.to_dict() for arm in self.arms]
        out["lift"], out["srm"] = self.lift.to_dict(), self.srm.to_dict()
        out["recommendation"] = self.recommendation.to_dict()
        for key in ("cuped", "time_to_conversion", "revenue"):
            value = getattr(self, key)
            out[key] = None if value is None else asdict(value)
        looks = self.looks.assign(day=[pd.Timestamp(day).isoformat() for day in self.looks["day"]])
        out["looks"] = looks.to_dict("records")
        return json_safe(out)


def _utc(value: datetime | pd.Timestamp) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo is not None else stamp


def _days_run(assigned: pd.Series, started_at: datetime | pd.Timestamp | None,
              now: datetime | pd.Timestamp | None) -> float:
    if started_at is None and assigned.empty:
        return 0.0
    start = _utc(started_at) if started_at is not None else pd.Timestamp(assigned.min())
    end = _utc(now) if now is not None else _utc(pd.Timestamp.now(tz="UTC"))
    return max((end - start).total_seconds() / 86400, 0.0)


def _time_to_conversion(leads: pd.DataFrame) -> TimeToConversion | None:
    days = pd.to_numeric(leads["days_to_conversion"], errors="coerce")
    converters = leads["converted"].eq(1) & days.notna()
    arms = [days[converters & leads["arm"].eq(arm)].to_numpy(float) for arm in ("control", "treatment")]
    if not any(len(a) for a in arms):
        return None
    p_value = float(mannwhitneyu(arms[1], arms[0]).pvalue) if all(len(a) for a in arms) else NAN
    medians = [float(np.median(a)) if len(a) else NAN for a in arms]
    return TimeToConversion(medians[0], medians[1], len(arms[0]), len(arms[1]), p_value)


def _revenue(leads: pd.DataFrame, alpha: float) -> RevenuePerLead:
    revenue = pd.to_numeric(leads["revenue"], errors="coerce").fillna(0.0)
    control = revenue[leads["arm"].eq("control")].to_numpy(float)
    treatment = revenue[leads["arm"].eq("treatment")].to_numpy(float)
    mean_c, mean_t = (float(a.mean()) if len(a) else NAN for a in (control, treatment))
    if min(len(control), len(treatment)) < 2 or (control.var() == 0 and treatment.var() == 0):
        return RevenuePerLead(mean_c, mean_t, mean_t - mean_c, NAN, NAN, NAN, NAN)
    test = ttest_ind(treatment, control, equal_var=False)
    low, high = test.confidence_interval(confidence_level=1 - alpha)
    return RevenuePerLead(mean_c, mean_t, mean_t - mean_c, float(low), float(high), float(test.statistic),
                          float(test.pvalue))


def _cuped(leads: pd.DataFrame, alpha: float) -> Adjusted | None:
    treated = leads["arm"].eq("treatment").to_numpy(int)
    if min(treated.sum(), len(treated) - treated.sum()) < 2:
        return None
    return cuped_lift(leads["converted"].to_numpy(float), leads["covariate"].to_numpy(float), treated, alpha)


def _base_rate(arm: ArmRate, mde: float) -> float:
    if arm.n == 0:
        return FALLBACK_BASE_RATE
    return float(np.clip(arm.rate, 1e-3, 1 - mde - 1e-3))


def analyse(frame: pd.DataFrame, *, split: float, mde: float, alpha: float = 0.05, power: float = 0.8,
            min_days: float = 14, started_at: datetime | pd.Timestamp | None = None,
            now: datetime | pd.Timestamp | None = None, tau2: float | None = None,
            srm_threshold: float = 0.001) -> ExperimentAnalysis:
    """Read an experiment on its matured leads (those whose conversion window has closed).

    Parameters
    ----------
    frame : one row per lead: ``arm`` ("control"/"treatment"), ``assigned_at``, ``converted`` (0/1);
        optional ``covariate`` (pre-assignment, e.g. the model probability: adds CUPED),
        ``days_to_conversion`` (NaN when not converted) and ``revenue`` (NaN or 0 when not converted).
    split : planned treatment share; mde : absolute lift the experiment is planned to detect.
    started_at, now : the experiment's start (default: first assignment) and the reading time (default:
        the current time), for the minimum duration; naive times are UTC.
    tau2 : mSPRT mixing variance, default :func:`default_tau2` of ``mde``.

    The sample size and power are planned on the observed control rate (clipped into the range where
    ``mde`` fits; :data:`FALLBACK_BASE_RATE` while control has no leads).

    Raises
    ------
    DataValidationError
        On missing required columns, unknown arms, outcomes other than 0/1 or bad assignment times.
    ConfigError
        On a split, mde, alpha, power or tau2 out of range.
    """
    alpha, split = check_alpha(alpha), check_alpha(split, "split")
    if not 0 < mde < 1:
        raise ConfigError(f"mde: expected an absolute lift in (0, 1), got {mde!r}")
    tau2 = default_tau2(mde) if tau2 is None else tau2
    leads = check_leads(frame)
    n = leads["arm"].value_counts().reindex(["control", "treatment"], fill_value=0)
    conv = leads.groupby("arm")["converted"].sum().reindex(["control", "treatment"], fill_value=0)
    arms = (arm_rate("control", int(conv["control"]), int(n["control"]), alpha),
            arm_rate("treatment", int(conv["treatment"]), int(n["treatment"]), alpha))
    lift = two_proportion_lift(arms[0].conversions, arms[0].n, arms[1].conversions, arms[1].n, alpha)
    srm = sample_ratio_check(arms[0].n, arms[1].n, split, srm_threshold)
    looks = sequential_looks(leads, tau2=tau2, alpha=alpha)
    last = looks.iloc[-1] if len(looks) else pd.Series(NAN, index=looks.columns)
    base = _base_rate(arms[0], mde)
    required = required_sample_size(base, mde, alpha, power, split)
    days = _days_run(leads["assigned_at"], started_at, now)
    revenue = _revenue(leads, alpha) if "revenue" in leads.columns else None
    recommendation = recommend(lift=lift, sequential_p=float(last["seq_p_value"]), srm=srm, days_run=days,
                               min_days=min_days, n_total=arms[0].n + arms[1].n, required_total=required,
                               alpha=alpha, guardrail_breaches=guardrails(revenue, alpha))
    return ExperimentAnalysis(
        arms, lift, srm, float(last["seq_p_value"]), float(last["seq_low"]), float(last["seq_high"]),
        float(tau2), achieved_power(base, mde, arms[0].n, arms[1].n, alpha), required, base, days,
        _cuped(leads, alpha) if "covariate" in leads.columns else None,
        _time_to_conversion(leads) if "days_to_conversion" in leads.columns else None,
        revenue, recommendation, looks)


def guardrails(revenue: RevenuePerLead | None, alpha: float) -> tuple[str, ...]:
    """The guardrails the treatment broke: revenue per lead significantly lower (Welch's t-test at
    ``alpha``), whatever conversion did. More conversions of smaller deals is not a win."""
    if revenue is not None and revenue.p_value < alpha and revenue.diff < 0:
        return (f"revenue per lead fell from {revenue.mean_control:,.2f} to {revenue.mean_treatment:,.2f} "
                f"(Welch p = {revenue.p_value:.3g})",)
    return ()
