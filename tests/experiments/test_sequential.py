"""The mSPRT against a hand-computed example, its duality with the confidence sequence, and what it is
for: reading an A/A test every day keeps its false-positive rate, reading a fixed-horizon test does not."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from leadscore.core.exceptions import ConfigError, DataValidationError
from leadscore.experiments import sequential
from leadscore.experiments.sequential import (
    LOOK_COLUMNS,
    always_valid_p_values,
    confidence_sequence,
    default_tau2,
    mixture_likelihood_ratio,
    sequential_looks,
)


def test_likelihood_ratio_and_confidence_sequence_by_hand():
    d, v, tau2 = 0.03, 0.0002, 0.0004
    # sqrt(V / (V + tau2)) = sqrt(1/3); d**2 tau2 / (2 V (V + tau2)) = 3.6e-7 / 2.4e-7 = 1.5
    assert float(mixture_likelihood_ratio(d, v, tau2)) == pytest.approx(math.sqrt(1 / 3) * math.exp(1.5))
    assert float(mixture_likelihood_ratio(d, v, tau2)) == pytest.approx(2.58750, abs=1e-5)
    assert always_valid_p_values([d], [v], tau2)[0] == pytest.approx(1 / 2.58750, abs=1e-5)
    low, high = confidence_sequence([d], [v], tau2, alpha=0.05)
    # V (V + tau2) / tau2 = 3e-4; log(3) - 2 log(0.05) = 7.090077
    half = math.sqrt(3e-4 * (math.log(3) - 2 * math.log(0.05)))
    assert half == pytest.approx(0.046120, abs=1e-6)
    assert (low[0], high[0]) == (pytest.approx(d - half), pytest.approx(d + half))


def test_no_difference_is_evidence_for_none_and_undefined_variance_is_nan():
    lam = mixture_likelihood_ratio([0.0, 0.0, 0.1], [1e-4, 1e-6, 0.0], 1e-4)
    assert lam[0] == pytest.approx(math.sqrt(0.5)) and lam[1] < lam[0] and math.isnan(lam[2])
    p = always_valid_p_values([0.1, 0.0, 0.02, 0.0], [0.0, 1e-4, 1e-4, 0.0], 1e-4)
    assert math.isnan(p[0]) and p[1] == 1.0 and p[3] == p[2] < 1.0     # NaN looks do not move the minimum


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(-0.2, 0.2), st.floats(1e-6, 1e-2)), min_size=1, max_size=30),
       st.floats(1e-5, 1e-2), st.floats(0.01, 0.2))
def test_p_values_never_increase_and_agree_with_the_confidence_sequence(looks, tau2, alpha):
    diffs, variances = np.array(looks).T
    p = always_valid_p_values(diffs, variances, tau2)
    assert np.all(np.diff(p) <= 0) and np.all((p >= 0) & (p <= 1))
    per_look = np.minimum(1, 1 / mixture_likelihood_ratio(diffs, variances, tau2))
    assert p == pytest.approx(np.minimum.accumulate(per_look))
    low, high = confidence_sequence(diffs, variances, tau2, alpha)
    outside = (low > 0) | (high < 0)
    clear = np.abs(per_look - alpha) > 1e-9 * alpha                     # away from the boundary
    assert np.array_equal(outside[clear], (per_look < alpha)[clear])    # Lambda >= 1/alpha <=> 0 excluded
    run_low, run_high = confidence_sequence(diffs, variances, tau2, alpha, intersect=True)
    assert np.all(np.diff(run_low) >= 0) and np.all(np.diff(run_high) <= 0)
    run_outside = (run_low > 0) | (run_high < 0) | (run_low > run_high)
    assert np.array_equal(run_outside[clear], (p < alpha)[clear])


def _aa_experiments(rate_control: float, rate_treatment: float, sims: int = 300, looks: int = 30,
                    per_look: int = 60, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Daily fixed-horizon p-values (pooled z-test by hand) and always-valid p-values of simulated tests."""
    rng = np.random.default_rng(seed)
    cc = rng.binomial(per_look, rate_control, (sims, looks)).cumsum(axis=1)
    ct = rng.binomial(per_look, rate_treatment, (sims, looks)).cumsum(axis=1)
    n = per_look * np.arange(1, looks + 1)
    pc, pt = cc / n, ct / n
    pooled = (cc + ct) / (2 * n)
    fixed = 2 * norm.sf(np.abs(pt - pc) / np.sqrt(pooled * (1 - pooled) * 2 / n))
    variance = pc * (1 - pc) / n + pt * (1 - pt) / n
    seq = np.vstack([always_valid_p_values(pt[i] - pc[i], variance[i], default_tau2(0.03))
                     for i in range(sims)])
    return fixed, seq


def test_daily_peeking_inflates_false_positives_and_the_sequential_test_does_not():
    fixed, seq = _aa_experiments(0.1, 0.1)
    assert 0.02 < (fixed[:, -1] < 0.05).mean() < 0.09        # a single planned look is fine
    assert (fixed < 0.05).any(axis=1).mean() > 0.15           # 30 looks: several times alpha
    assert (seq < 0.05).any(axis=1).mean() <= 0.05            # always valid
    _, seq_effect = _aa_experiments(0.1, 0.14, sims=100)
    assert (seq_effect[:, -1] < 0.05).mean() > 0.7            # and still finds a real lift


def _leads() -> pd.DataFrame:
    rows = (
        [("control", "2024-01-01 09:00", c) for c in (1, 0, 0, 0)]
        + [("control", "2024-01-02 10:00", c) for c in (1, 0)]
        + [("treatment", "2024-01-02 23:59", c) for c in (1, 1, 1, 0, 0)]
        + [("control", "2024-01-04 08:00", 0)] * 4
        + [("treatment", "2024-01-04 12:00", c) for c in (1, 1, 0, 0, 0)]
    )
    frame = pd.DataFrame(rows, columns=["arm", "assigned_at", "converted"])
    frame["assigned_at"] = pd.to_datetime(frame["assigned_at"])
    return frame.sample(frac=1, random_state=0)               # order must not matter


def test_sequential_looks_cumulate_by_day():
    tau2 = 0.01
    looks = sequential_looks(_leads(), tau2=tau2)
    assert tuple(looks.columns) == LOOK_COLUMNS
    assert list(looks["day"]) == list(pd.date_range("2024-01-01", periods=4, freq="D"))
    assert looks[["n_control", "conversions_control", "n_treatment", "conversions_treatment"]].to_numpy(
    ).tolist() == [[4, 1, 0, 0], [6, 2, 5, 3], [6, 2, 5, 3], [10, 2, 10, 5]]
    first = looks.iloc[0]
    assert all(math.isnan(first[c]) for c in LOOK_COLUMNS[5:])   # no treatment lead yet
    nc, nt = np.array([6, 10]), np.array([5, 10])               # looks 2 (= 3) and 4
    pc, pt = np.array([2, 2]) / nc, np.array([3, 5]) / nt
    diff, variance = pt - pc, pc * (1 - pc) / nc + pt * (1 - pt) / nt
    pooled = (pc * nc + pt * nt) / (nc + nt)
    fixed_p = 2 * norm.sf(np.abs(diff) / np.sqrt(pooled * (1 - pooled) * (1 / nc + 1 / nt)))
    last = looks.iloc[-1]
    assert last["diff"] == pytest.approx(0.3) and last["fixed_p_value"] == pytest.approx(fixed_p[1])
    assert last["fixed_low"] == pytest.approx(0.3 - norm.isf(0.025) * math.sqrt(variance[1]))
    lam = np.sqrt(variance / (variance + tau2)) * np.exp(diff**2 * tau2 / (2 * variance * (variance + tau2)))
    assert looks["seq_p_value"].iloc[1:].tolist() == pytest.approx([min(1, 1 / lam[0])] * 2
                                                                  + [min(1, 1 / lam[0], 1 / lam[1])])
    log_term = np.log((variance + tau2) / variance) - 2 * np.log(0.05)
    half = np.sqrt(variance * (variance + tau2) / tau2 * log_term)
    assert last["seq_low"] == pytest.approx(max(diff[0] - half[0], diff[1] - half[1]))
    assert last["seq_high"] == pytest.approx(min(diff[0] + half[0], diff[1] + half[1]))
    assert last["seq_high"] - last["seq_low"] > last["fixed_high"] - last["fixed_low"]


def test_sequential_looks_read_aware_times_in_utc_and_other_periods():
    naive = _leads()
    new_york = naive["assigned_at"].dt.tz_localize("UTC").dt.tz_convert("America/New_York")
    aware = naive.assign(assigned_at=new_york)
    pd.testing.assert_frame_equal(sequential_looks(aware, tau2=0.01), sequential_looks(naive, tau2=0.01))
    weekly = sequential_looks(naive, tau2=0.01, freq="W")
    assert len(weekly) == 1 and weekly["n_control"].iloc[0] == 10
    assert sequential_looks(naive.iloc[:0], tau2=0.01).empty


@pytest.mark.parametrize(("change", "match"), [
    (lambda f: f.drop(columns="converted"), "missing columns: converted"),
    (lambda f: f.assign(arm="variant_b"), "arm: expected 'control' or 'treatment', got variant_b"),
    (lambda f: f.assign(converted=2), "converted: expected 0 or 1"),
    (lambda f: f.assign(assigned_at=pd.NaT), "assigned_at: expected datetimes, got 20 missing"),
    (lambda f: f.assign(assigned_at="yesterday-ish"), "assigned_at: expected datetimes"),
])
def test_invalid_leads(change, match):
    with pytest.raises(DataValidationError, match=match):
        sequential_looks(change(_leads()), tau2=0.01)


def test_invalid_settings():
    with pytest.raises(ConfigError, match="tau2: expected a positive mixing variance"):
        sequential_looks(_leads(), tau2=0.0)
    with pytest.raises(ConfigError, match="freq: expected a pandas frequency"):
        sequential_looks(_leads(), tau2=0.01, freq="fortnightly")
    with pytest.raises(ConfigError, match="alpha: expected"):
        confidence_sequence([0.1], [0.01], 0.01, alpha=1.5)
    with pytest.raises(ConfigError, match="mde: expected"):
        default_tau2(0.0)
    assert default_tau2(0.02) == pytest.approx(0.0004)


def test_docstring_examples():
    assert doctest.testmod(sequential).failed == 0
