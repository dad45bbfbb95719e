"""Simulated experiments on the demo world: the world's rows, one experiment, and the repeated runners."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leadscore.core.config import Params
from leadscore.core.exceptions import ConfigError, DataValidationError
from leadscore.demo.followup import MAX_WAIT_DAYS
from leadscore.demo.simulation import (
    Trial,
    World,
    build_world,
    count_rejections,
    cuped_runs,
    plan_trial,
    read_experiment,
    shift_probability,
    simulate_counts,
    simulate_experiment,
)
from leadscore.experiments.arms import rules_points
from leadscore.experiments.assignment import assign_arms
from leadscore.experiments.recommendation import ACTIONS
from leadscore.modeling.rules import DEMO_RULES

PARAMS = Params()


@pytest.fixture(scope="module")
def world() -> World:
    return build_world(n_leads=2_500, seed=3, params=PARAMS, months=2)


def _oracle(world: World) -> np.ndarray:
    """A ranking that knows the truth: the best possible treatment."""
    return world.base_probability


def test_the_world_holds_whole_week_snapshots_of_open_leads(world):
    rows = world.rows
    assert 1_800 < len(world) < 2_500  # the last week's leads and those converted within it are left out
    assert not {"label", "status", "sales_status"} & set(rows.columns)
    assert {"quote_requests", "meetings", "seniority", "source"} <= set(rows.columns)
    np.testing.assert_array_equal(rows["snapshot_at"], rows["created_at"] + pd.Timedelta(days=7))
    assert np.all(np.diff(world.scored_ms) >= 0)
    assert ((world.base_probability > 0) & (world.base_probability < 1)).all()
    assert rows["lead_id"].is_unique


def test_rule_points_score_the_snapshot_rows(world):
    points = rules_points(DEMO_RULES, world.rows)
    assert points.shape == (len(world),) and np.unique(points).size > 5
    quote = world.rows["quote_requests"].to_numpy() >= 1
    assert points[quote].mean() > points[~quote].mean() + 10  # "Requested a quote" is worth 25


def test_a_simulation_repeats_exactly_for_its_seed(world):
    first = simulate_experiment(world, -_oracle(world), _oracle(world), seed=11)
    again = simulate_experiment(world, -_oracle(world), _oracle(world), seed=11)
    other = simulate_experiment(world, -_oracle(world), _oracle(world), seed=12)
    pd.testing.assert_frame_equal(first.leads, again.leads)
    assert first.true_lift == again.true_lift == other.true_lift  # the truth has no sampling noise
    assert not first.leads["converted"].equals(other.leads["converted"])


def test_the_true_lift_has_the_sign_of_the_better_ranking(world):
    best, worst = _oracle(world), -_oracle(world)
    assert simulate_experiment(world, worst, best).true_lift > 0.01
    assert simulate_experiment(world, best, worst).true_lift < -0.01
    assert simulate_experiment(world, best, best).true_lift == 0.0  # A/A: exactly no effect


def test_arms_follow_the_salted_assignment_and_the_split(world):
    leads = simulate_experiment(world, -_oracle(world), _oracle(world), split=0.3, salt="exp-7").leads
    np.testing.assert_array_equal(leads["arm"], assign_arms("exp-7", world.lead_ids, 0.3))
    share = (leads["arm"] == "treatment").mean()
    assert abs(share - 0.3) < 4 * np.sqrt(0.3 * 0.7 / len(leads))


def test_each_lead_carries_a_consistent_record(world):
    experiment = simulate_experiment(world, -_oracle(world), _oracle(world), seed=5)
    leads = experiment.leads
    converted = leads["converted"].to_numpy() == 1
    assert leads["days_to_conversion"].isna().to_numpy().tolist() == (~converted).tolist()
    assert leads["days_to_conversion"].between(0, world.window_days).sum() == converted.sum()
    assert (leads["wait_days"][leads["called"]] <= MAX_WAIT_DAYS).all()
    assert leads["wait_days"][~leads["called"]].isna().all()
    assert (leads["probability"] >= world.base_probability - 1e-12).all()
    np.testing.assert_array_equal(leads["covariate"], leads["treatment_score"])  # the default covariate
    assert (leads["assigned_at"] == world.rows["snapshot_at"]).all()
    rates = leads.groupby("arm")["probability"].mean()
    assert rates["treatment"] > rates["control"]  # each arm's leads carry its own policy's probability


def test_read_experiment_gives_a_recommendation(world):
    experiment = simulate_experiment(world, -_oracle(world), _oracle(world), seed=5)
    analysis = read_experiment(experiment, split=0.5, mde=0.02)
    assert analysis.recommendation.action in ACTIONS
    assert analysis.arms[0].n + analysis.arms[1].n == len(world)
    assert analysis.cuped is not None and analysis.time_to_conversion is not None


def test_shift_probability_raises_the_mean_by_exactly_the_lift(world):
    shifted = shift_probability(world.base_probability, 0.03)
    assert shifted.mean() - world.base_probability.mean() == pytest.approx(0.03, abs=1e-9)
    assert (shifted > world.base_probability).all()
    with pytest.raises(ConfigError, match="lift"):
        shift_probability(world.base_probability, 0.99)


def test_plan_trial_takes_the_first_leads_and_counts_the_days(world):
    trial = plan_trial(world, _oracle(world), _oracle(world), 1_000, lift=0.02)
    assert trial.control.size == 1_000 and trial.day[0] == 0 and np.all(np.diff(trial.day) >= 0)
    assert trial.true_lift == pytest.approx(0.02)
    assert plan_trial(world, _oracle(world), _oracle(world), 1_000).true_lift == 0.0
    with pytest.raises(ConfigError, match="n_total"):
        plan_trial(world, _oracle(world), _oracle(world), len(world) + 1)
    with pytest.raises(DataValidationError, match="rank"):
        plan_trial(world, _oracle(world)[:-1], _oracle(world), 10)


def _trial(n: int = 2_000, days: int = 10, lift: float = 0.0) -> Trial:
    rng = np.random.default_rng(0)
    control = rng.beta(2, 12, n)
    return Trial(control, shift_probability(control, lift), control, np.repeat(np.arange(days), n // days))


def test_simulated_counts_are_cumulative_per_look_and_repeatable():
    trial = _trial()
    counts = simulate_counts(trial, runs=30, split=0.5, seed=1)
    assert counts.n_control.shape == (30, trial.looks) == (30, 10)
    np.testing.assert_array_equal(counts.n_control[:, -1] + counts.n_treatment[:, -1], 2_000)
    for cumulative in (counts.n_control, counts.conversions_control, counts.n_treatment):
        assert (np.diff(cumulative, axis=1) >= 0).all()
    assert (counts.conversions_treatment <= counts.n_treatment).all()
    np.testing.assert_array_equal(simulate_counts(trial, runs=30, seed=1).n_control, counts.n_control)


def test_peeking_finds_more_than_the_planned_look_and_a_large_lift_is_found():
    aa = count_rejections(simulate_counts(_trial(), runs=200, seed=2), alpha=0.05, tau2=0.02**2)
    assert aa.runs == 200 and aa.looks == 10
    assert aa.peeking >= aa.fixed and aa.peeking > aa.sequential  # the last look is one of the peeks
    assert aa.fixed <= 25  # about 5 % of 200
    big = count_rejections(simulate_counts(_trial(lift=0.08), runs=50, seed=3), alpha=0.05, tau2=0.02**2)
    assert big.fixed == big.peeking == 50 and big.sequential >= 40  # the mSPRT pays for its safety


def test_cuped_narrows_the_interval_with_an_informative_covariate():
    widths = cuped_runs(_trial(lift=0.02), runs=20, seed=4)
    assert widths.runs == 20
    assert widths.width < widths.unadjusted_width and widths.variance_reduction > 0.05
    assert 0 <= widths.coverage <= 1
