"""Every rule of the recommendation, in its order, with the figures its reasons quote."""

from __future__ import annotations

import json
import math

import pytest

from leadscore.core.exceptions import ConfigError, DataValidationError
from leadscore.experiments.proportions import two_proportion_lift
from leadscore.experiments.recommendation import ACTIONS, recommend
from leadscore.experiments.srm import sample_ratio_check

BETTER = two_proportion_lift(100, 1000, 140, 1000)     # 10% -> 14%
WORSE = two_proportion_lift(140, 1000, 100, 1000)
FLAT = two_proportion_lift(100, 1000, 102, 1000)
HEALTHY = sample_ratio_check(1000, 1000, split=0.5)
BROKEN = sample_ratio_check(1000, 1300, split=0.5)


def _recommend(**changes):
    args = {"lift": BETTER, "sequential_p": 0.001, "srm": HEALTHY, "days_run": 20.0, "min_days": 14.0,
            "n_total": 2000, "required_total": 3000, "alpha": 0.05}
    return recommend(**{**args, **changes})


def test_sample_ratio_mismatch_means_investigate_whatever_the_lift():
    assert BROKEN.mismatch
    got = _recommend(srm=BROKEN, guardrail_breaches=("unsubscribe rate",))
    assert got.action == "investigate" and got.remaining_leads is None
    assert "56.5% of leads in treatment, 50.0% planned" in got.reasons[0]
    assert "assignment or logging is broken" in got.reasons[1]


def test_guardrail_breach_rolls_back_even_a_winner():
    got = _recommend(guardrail_breaches=("complaints per lead", "call time"))
    assert got.action == "rollback"
    assert got.reasons == ("guardrail breached: complaints per lead", "guardrail breached: call time")


def test_significantly_worse_rolls_back():
    got = _recommend(lift=WORSE, days_run=2.0)
    assert got.action == "rollback" and got.remaining_leads is None
    assert "treatment converts worse: conversion 14.00% in control, 10.00% in treatment (-4.00 points)" in \
        got.reasons[0]
    assert "always-valid p = 0.001" in got.reasons[0]


def test_significantly_better_after_the_minimum_duration_deploys():
    got = _recommend(days_run=14.0)
    assert got.action == "deploy" and got.remaining_leads is None
    assert "(+4.00 points)" in got.reasons[0] and "ran 14.0 days" in got.reasons[1]


def test_significantly_better_too_early_keeps_running():
    got = _recommend(days_run=9.5)
    assert got.action == "keep_running" and got.remaining_leads == 1000
    assert "minimum duration not reached: 9.5 of 14 days, 5 days left" in got.reasons[1]


def test_no_detectable_improvement_at_the_planned_sample_iterates():
    got = _recommend(lift=FLAT, sequential_p=0.6, n_total=3000)
    assert got.action == "iterate" and got.remaining_leads is None
    assert "no detectable improvement at the planned sample" in got.reasons[0]
    assert "3000 leads of 3000 planned" in got.reasons[1]


@pytest.mark.parametrize(("changes", "remaining", "phrases"), [
    ({"lift": FLAT, "sequential_p": 0.6}, 1000, ["1000 more leads needed (2000 of 3000)"]),
    ({"lift": FLAT, "sequential_p": 0.6, "n_total": 3500, "days_run": 3.0}, 0,
     ["minimum duration not reached: 3.0 of 14 days, 11 days left"]),
    ({"sequential_p": 0.05}, 1000, ["always-valid p = 0.05"]),                 # p == alpha: not significant
    ({"sequential_p": math.nan, "lift": two_proportion_lift(0, 0, 0, 0)}, 1000,
     ["no always-valid p-value yet", "no conversion rate in both arms yet"]),
])
def test_otherwise_keeps_running_with_the_leads_still_needed(changes, remaining, phrases):
    got = _recommend(**changes)
    assert got.action == "keep_running" and got.remaining_leads == remaining
    text = " | ".join(got.reasons).replace("for the planned sample ", "")
    assert all(phrase in text for phrase in phrases), text


def test_a_fixed_horizon_p_value_is_not_what_decides():
    assert BETTER.p_value < 0.05
    assert _recommend(sequential_p=0.2).action == "keep_running"


def test_planned_sample_with_only_the_fixed_test_significant_keeps_running():
    """At the fixed plan's size the sequential test has less power: a lift the planned z-test sees is
    not given up on ("iterate"), nor deployed on the fixed test alone."""
    got = _recommend(sequential_p=0.2, n_total=3000)
    assert got.action == "keep_running" and got.remaining_leads is None
    assert f"p = {BETTER.p_value:.3g}" in got.reasons[0] and "always-valid p = 0.2" in got.reasons[0]
    worse = _recommend(lift=WORSE, sequential_p=0.2, n_total=3000)
    assert worse.action == "iterate"  # significantly worse on the fixed test only: no improvement to wait for


def test_to_dict_is_json():
    got = _recommend()
    assert got.action in ACTIONS
    assert json.loads(json.dumps(got.to_dict(), allow_nan=False)) == {
        "action": "deploy", "reasons": list(got.reasons), "remaining_leads": None}


@pytest.mark.parametrize(("changes", "error", "match"), [
    ({"alpha": 0.0}, ConfigError, "alpha: expected"),
    ({"min_days": -1.0}, ConfigError, "days: expected days_run and min_days >= 0"),
    ({"n_total": -5}, DataValidationError, "lead counts: expected n_total and required_total >= 0"),
])
def test_invalid_arguments(changes, error, match):
    with pytest.raises(error, match=match):
        _recommend(**changes)
