"""The demo world's sales follow-up: capacity, order, waiting limit, effect size, and its README section."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special

from leadscore.core.exceptions import ConfigError, DataValidationError
from leadscore.demo import generate_crm, latent
from leadscore.demo.followup import (
    FOLLOW_UP_GAIN,
    MAX_WAIT_DAYS,
    call_waits,
    conversion_days,
    daily_capacity,
    follow_up_probability,
    true_conversion,
    work_leads,
)
from leadscore.demo.generator import render_readme

DAY = latent.MS_PER_DAY
START = 20_000 * DAY  # a day boundary


def _arrivals(n: int, days: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scoring times over ``days`` days, base probabilities and a rank that follows them noisily."""
    rng = np.random.default_rng(seed)
    scored = np.sort(START + rng.integers(0, days * DAY, n))
    base = special.expit(rng.normal(-2, 1, n))
    rank = special.logit(base) + rng.normal(0, 0.5, n)
    return scored, base, rank


def _call_day(scored: np.ndarray, wait: np.ndarray, first: int) -> np.ndarray:
    """Day index (0 = day ``first``) of each call: a call is charged to the end of its day."""
    call_ms = np.rint(scored + wait * DAY).astype(np.int64)
    return call_ms // DAY - 1 - first


@pytest.mark.parametrize("capacity", [1.0, 3.5, 12.0])
def test_no_day_has_more_calls_than_the_capacity(capacity):
    scored, _, rank = _arrivals(400, 20, seed=1)
    wait = call_waits(scored, rank, capacity)
    called = ~np.isnan(wait)
    per_day = np.bincount(_call_day(scored[called], wait[called], int(scored.min() // DAY)))
    quota = np.diff(np.floor(np.arange(per_day.size + 1) * capacity)).astype(int)
    assert (per_day <= quota).all()
    np.testing.assert_array_equal(per_day[1:20], quota[1:20])  # 20 leads a day: the queue is never empty


def test_higher_ranked_leads_are_called_first():
    scored = np.full(12, START + DAY // 2)  # all waiting from the same moment
    rank = np.random.default_rng(2).permutation(12).astype(float)
    wait = call_waits(scored, rank, calls_per_day=2, max_wait_days=10)
    order = np.argsort(-rank)
    assert np.all(np.diff(wait[order]) >= 0)
    assert wait[order[:2]] == pytest.approx([0.5, 0.5])  # the top two that very day


def test_ties_go_to_the_earlier_scored_lead_and_repeat_exactly():
    scored = START + np.array([5, 1, 3, 2, 4]) * 3_600_000
    wait = call_waits(scored, np.zeros(5), calls_per_day=1, max_wait_days=10)
    assert np.argsort(wait).tolist() == [1, 3, 2, 4, 0]
    np.testing.assert_array_equal(wait, call_waits(scored, np.zeros(5), calls_per_day=1, max_wait_days=10))


def test_no_lead_is_called_after_the_waiting_limit():
    scored, _, rank = _arrivals(600, 10, seed=3)  # 60 leads a day for 2 calls a day: most are never called
    wait = call_waits(scored, rank, calls_per_day=2, max_wait_days=1.5)
    called = ~np.isnan(wait)
    assert (wait[called] <= 1.5).all() and (wait[called] > 0).all()
    assert 0 < called.sum() <= 2 * 12  # 2 a day, over the 10 days and the last leads' 1.5 days
    assert np.isnan(call_waits(scored, rank, 0.0)).all()  # no capacity: nobody is called


def test_the_effect_shrinks_with_the_wait_and_is_zero_without_a_call():
    base = np.full(6, 0.12)
    wait = np.array([0.0, 0.5, 1.0, 2.0, 5.0, np.nan])
    prob = follow_up_probability(base, wait)
    assert np.all(np.diff(prob[:5]) < 0) and (prob[:5] > base[:5]).all()
    assert prob[5] == base[5]
    odds = prob[0] / (1 - prob[0]) / (0.12 / 0.88)
    assert np.log(odds) == pytest.approx(FOLLOW_UP_GAIN)


def test_probabilities_stay_in_the_unit_interval():
    base = np.array([0.0, 1e-9, 0.5, 1 - 1e-9, 1.0])
    prob = follow_up_probability(base, np.zeros(5))
    assert ((prob >= 0) & (prob <= 1)).all()
    assert prob[0] == 0.0 and prob[-1] == 1.0
    scored, base, rank = _arrivals(300, 10, seed=4)
    work = work_leads(scored, base, rank, 8)
    assert ((work.probability >= base) & (work.probability <= 1)).all()
    np.testing.assert_array_equal(work.probability[~work.called], base[~work.called])
    np.testing.assert_array_equal(work.called, ~np.isnan(work.wait_days))


def test_a_better_ranking_converts_more_leads_with_the_same_team():
    scored, base, rank = _arrivals(3000, 30, seed=5)
    capacity = daily_capacity(scored, 0.2)
    oracle = true_conversion(scored, base, base, capacity)
    noisy = true_conversion(scored, base, rank, capacity)
    random = true_conversion(scored, base, np.random.default_rng(0).random(base.size), capacity)
    reverse = true_conversion(scored, base, -base, capacity)
    assert oracle > noisy > random > reverse > base.mean()


def test_daily_capacity_is_the_share_of_leads_a_day():
    scored = START + np.arange(40) * DAY // 4  # 4 leads a day for 10 days
    assert daily_capacity(scored, 0.25) == pytest.approx(1.0)
    assert daily_capacity(np.array([], dtype=np.int64), 0.5) == 0.0
    with pytest.raises(ConfigError, match="share"):
        daily_capacity(scored, 1.5)


def test_bad_inputs_are_refused():
    scored, base, rank = _arrivals(20, 2, seed=6)
    with pytest.raises(ConfigError, match="calls_per_day"):
        work_leads(scored, base, rank, -1)
    with pytest.raises(ConfigError, match="max_wait_days"):
        work_leads(scored, base, rank, 1, max_wait_days=0)
    with pytest.raises(DataValidationError, match="rank"):
        work_leads(scored, base, np.where(np.arange(20) == 3, np.nan, rank), 1)
    with pytest.raises(DataValidationError, match="base_probability"):
        work_leads(scored, base[:-1], rank, 1)
    with pytest.raises(DataValidationError, match="wait_days"):
        follow_up_probability([0.1], [-1.0])


def test_conversion_days_stay_in_the_window_and_follow_the_delay_law():
    days = conversion_days(np.random.default_rng(7), 20_000, snapshot_days=7, window_days=90)
    assert (days >= 0).all() and (days <= 90).all()
    low, mid, high = latent.delay_cdf([7, 7 + np.median(days), 97])
    assert (mid - low) / (high - low) == pytest.approx(0.5, abs=0.02)


def test_the_demo_readme_documents_the_mechanism():
    text = render_readme(generate_crm(n_leads=200, seed=1))
    assert "## How working leads changes conversion (A/B simulation)" in text
    assert f"not called within {MAX_WAIT_DAYS:g} days" in text and f"{FOLLOW_UP_GAIN:.2f} * exp(" in text
