"""analyse() end to end on synthetic experiments: each figure against an independent computation, the
recommendation, and strict JSON."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import mannwhitneyu, ttest_ind

from leadscore.core.exceptions import ConfigError, DataValidationError
from leadscore.experiments.analysis import analyse
from leadscore.experiments.proportions import required_sample_size
from leadscore.experiments.sequential import LOOK_COLUMNS

START = pd.Timestamp("2024-03-01")


def make_experiment(n: int = 3000, lift: float = 0.06, share: float = 0.5, days: int = 21,
                    seed: int = 0) -> pd.DataFrame:
    """Leads over ``days`` days; conversion driven by a pre-assignment score plus ``lift`` in treatment."""
    rng = np.random.default_rng(seed)
    arm = np.where(rng.random(n) < share, "treatment", "control")
    score = rng.beta(2, 10, n)
    converted = (rng.random(n) < score + lift * (arm == "treatment")).astype(int)
    return pd.DataFrame({
        "arm": arm,
        "assigned_at": START + pd.to_timedelta(rng.uniform(0, days, n), unit="D"),
        "converted": converted,
        "covariate": score,
        "days_to_conversion": np.where(converted == 1, rng.exponential(6, n), np.nan),
        "revenue": np.where(converted == 1, rng.gamma(2.0, 400.0, n), np.nan),
    })


@pytest.fixture(scope="module")
def leads() -> pd.DataFrame:
    return make_experiment()


@pytest.fixture(scope="module")
def result(leads):
    return analyse(leads, split=0.5, mde=0.03, min_days=14, now=START + pd.Timedelta(days=30))


def test_rates_lift_and_sample_ratio(leads, result):
    by_arm = leads.groupby("arm")["converted"].agg(["size", "sum", "mean"])
    control, treatment = result.arms
    assert (control.n, control.conversions) == (by_arm.loc["control", "size"], by_arm.loc["control", "sum"])
    assert (treatment.n, treatment.conversions) == (by_arm.loc["treatment", "size"],
                                                    by_arm.loc["treatment", "sum"])
    rates = by_arm["mean"]
    assert result.lift.absolute == pytest.approx(rates["treatment"] - rates["control"])
    assert result.lift.absolute_low < 0.06 < result.lift.absolute_high
    share = by_arm.loc["treatment", "size"] / len(leads)
    assert result.srm.observed_treatment_share == pytest.approx(share) and not result.srm.mismatch


def test_sequential_power_and_plan(leads, result):
    assert tuple(result.looks.columns) == LOOK_COLUMNS and len(result.looks) == 21
    assert result.looks["n_control"].iloc[-1] + result.looks["n_treatment"].iloc[-1] == len(leads)
    assert result.sequential_p_value == result.looks["seq_p_value"].iloc[-1] < 0.05
    assert result.sequential_low <= result.lift.absolute <= result.sequential_high
    assert result.sequential_low < result.lift.absolute_low       # wider than the fixed-horizon interval
    assert result.sequential_high > result.lift.absolute_high
    assert result.tau2 == pytest.approx(0.03**2)
    assert result.base_rate == pytest.approx(result.arms[0].rate)
    assert result.required_total == required_sample_size(result.arms[0].rate, 0.03, 0.05, 0.8, 0.5)
    assert 0.5 < result.power < 1
    first = leads["assigned_at"].min()                              # the start defaults to the first lead
    assert result.days_run == pytest.approx((START + pd.Timedelta(days=30) - first) / pd.Timedelta(days=1))


def test_cuped_time_to_conversion_and_revenue(leads, result):
    assert result.cuped is not None and result.cuped.variance_reduction > 0.05
    assert result.cuped.unadjusted_lift == pytest.approx(result.lift.absolute)
    converters = leads[leads["converted"] == 1]
    days = {arm: converters.loc[converters["arm"] == arm, "days_to_conversion"]
            for arm in ("control", "treatment")}
    ttc = result.time_to_conversion
    assert ttc is not None
    assert ttc.median_days_control == pytest.approx(days["control"].median())
    assert ttc.median_days_treatment == pytest.approx(days["treatment"].median())
    assert ttc.p_value == pytest.approx(mannwhitneyu(days["treatment"], days["control"]).pvalue)
    revenue = leads["revenue"].fillna(0.0)
    treated = leads["arm"] == "treatment"
    welch = ttest_ind(revenue[treated], revenue[~treated], equal_var=False)
    assert result.revenue is not None
    assert result.revenue.mean_control == pytest.approx(revenue[leads["arm"] == "control"].mean())
    assert result.revenue.t == pytest.approx(welch.statistic)
    assert result.revenue.p_value == pytest.approx(welch.pvalue)
    low, high = welch.confidence_interval(0.95)
    assert (result.revenue.low, result.revenue.high) == (pytest.approx(low), pytest.approx(high))


def test_a_clear_winner_after_the_minimum_duration_is_deployed(result):
    assert result.recommendation.action == "deploy"
    too_early = analyse(make_experiment(), split=0.5, mde=0.03, min_days=40,
                        now=START + pd.Timedelta(days=30))
    assert too_early.recommendation.action == "keep_running"


def test_to_dict_is_strict_json(result):
    out = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert out["recommendation"]["action"] == "deploy" and out["arms"][0]["arm"] == "control"
    assert len(out["looks"]) == 21 and out["looks"][0]["day"] == "2024-03-01T00:00:00"
    assert out["cuped"]["theta"] == pytest.approx(result.cuped.theta)
    assert isinstance(out["required_total"], int) and isinstance(out["looks"][0]["n_control"], int)


def test_sparse_early_data_gives_nulls_not_errors():
    frame = pd.DataFrame({
        "arm": ["control"] * 6 + ["treatment"] * 5,
        "assigned_at": pd.date_range("2024-03-01", periods=11, freq="7h", tz="Europe/Berlin"),
        "converted": [1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0],
    })
    got = analyse(frame, split=0.5, mde=0.05, now=pd.Timestamp("2024-03-05", tz="UTC"))
    assert got.lift.relative == -1.0 and math.isnan(got.lift.relative_low)
    assert got.cuped is None and got.time_to_conversion is None and got.revenue is None
    assert got.recommendation.action == "keep_running" and got.recommendation.remaining_leads > 0
    out = json.loads(json.dumps(got.to_dict(), allow_nan=False))
    assert out["lift"]["relative_low"] is None and out["looks"][0]["seq_p_value"] is None
    empty = analyse(frame.iloc[:0], split=0.5, mde=0.05)
    assert empty.base_rate == 0.1 and math.isnan(empty.sequential_p_value)
    json.dumps(empty.to_dict(), allow_nan=False)


def test_days_run_uses_the_start_and_reading_time():
    frame = make_experiment(n=200, days=3)
    got = analyse(frame, split=0.5, mde=0.03, started_at=pd.Timestamp("2024-02-29 23:00", tz="Europe/Paris"),
                  now=pd.Timestamp("2024-03-10 22:00"))
    assert got.days_run == pytest.approx(10.0)


def test_a_broken_split_is_investigated():
    got = analyse(make_experiment(share=0.6), split=0.5, mde=0.03, now=START + pd.Timedelta(days=30))
    assert got.srm.mismatch and got.recommendation.action == "investigate"


@pytest.mark.parametrize(("change", "kwargs", "error", "match"), [
    (lambda f: f.drop(columns="assigned_at"), {}, DataValidationError, "missing columns: assigned_at"),
    (lambda f: f.replace({"arm": {"treatment": "B"}}), {}, DataValidationError, "arm: expected 'control'"),
    (lambda f: f.assign(converted=f["converted"] * 3), {}, DataValidationError, "converted: expected 0 or 1"),
    (lambda f: f.assign(covariate=np.nan), {}, DataValidationError, "x: expected a 1-d array of finite"),
    (lambda f: f, {"split": 1.5}, ConfigError, "split: expected a value in"),
    (lambda f: f, {"mde": 0.0}, ConfigError, "mde: expected an absolute lift"),
    (lambda f: f, {"tau2": -1.0}, ConfigError, "tau2: expected a positive mixing variance"),
])
def test_invalid_input(change, kwargs, error, match):
    with pytest.raises(error, match=match):
        analyse(change(make_experiment(n=100)), **{"split": 0.5, "mde": 0.03, **kwargs})


def test_significantly_lower_revenue_per_lead_is_a_broken_guardrail() -> None:
    """More conversions of much smaller deals: conversion alone says deploy, the guardrail says rollback."""
    rng = np.random.default_rng(11)
    n = 20_000
    arm = np.where(rng.random(n) < 0.5, "treatment", "control")
    treated = arm == "treatment"
    converted = (rng.random(n) < np.where(treated, 0.20, 0.12)).astype(int)
    deal = np.where(treated, 200.0, 1_000.0) * rng.uniform(0.5, 1.5, n)
    frame = pd.DataFrame({"arm": arm, "converted": converted, "revenue": converted * deal,
                          "assigned_at": pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 30, n),
                                                                                     unit="D")})
    without = analyse(frame.drop(columns="revenue"), split=0.5, mde=0.02, now=pd.Timestamp("2025-03-01"))
    assert without.recommendation.action == "deploy"
    found = analyse(frame, split=0.5, mde=0.02, now=pd.Timestamp("2025-03-01"))
    assert found.revenue is not None and found.revenue.diff < 0 and found.revenue.p_value < 0.05
    assert found.recommendation.action == "rollback"
    assert any("revenue per lead fell" in reason for reason in found.recommendation.reasons)
