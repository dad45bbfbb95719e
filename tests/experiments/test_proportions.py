"""Arm rates, lift, sample size and power against their textbook formulas and independent scipy calls."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chi2_contingency, norm

from leadscore.core.exceptions import ConfigError, DataValidationError
from leadscore.experiments import proportions
from leadscore.experiments.proportions import (
    achieved_power,
    arm_rate,
    required_sample_size,
    two_proportion_lift,
)

Z95 = norm.isf(0.025)


def _wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson (1927) score interval, straight from the formula."""
    p = k / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    return centre - half, centre + half


@pytest.mark.parametrize(("k", "n"), [(12, 100), (0, 5), (5, 5), (1, 3), (377, 4210)])
def test_arm_rate_is_the_wilson_interval(k, n):
    got = arm_rate("control", k, n)
    low, high = _wilson(k, n)
    assert (got.arm, got.n, got.conversions, got.rate) == ("control", n, k, k / n)
    assert got.low == pytest.approx(low, abs=1e-12) and got.high == pytest.approx(high, abs=1e-12)
    z90 = norm.isf(0.05)
    assert arm_rate("t", k, n, alpha=0.1).high == pytest.approx(_wilson(k, n, z90)[1], abs=1e-12)


def test_arm_without_leads_has_no_rate_and_the_whole_interval():
    got = arm_rate("treatment", 0, 0)
    assert math.isnan(got.rate) and (got.low, got.high) == (0.0, 1.0)
    assert got.to_dict() == {"arm": "treatment", "n": 0, "conversions": 0, "rate": None, "low": 0.0,
                             "high": 1.0}


def test_lift_by_hand():
    cc, nc, ct, nt = 30, 400, 52, 410
    pc, pt = cc / nc, ct / nt
    got = two_proportion_lift(cc, nc, ct, nt)
    assert (got.control_rate, got.treatment_rate) == (pc, pt)
    assert got.absolute == pytest.approx(pt - pc)
    se = math.sqrt(pc * (1 - pc) / nc + pt * (1 - pt) / nt)             # Wald, unpooled
    assert got.absolute_low == pytest.approx(pt - pc - Z95 * se)
    assert got.absolute_high == pytest.approx(pt - pc + Z95 * se)
    pooled = (cc + ct) / (nc + nt)
    z = (pt - pc) / math.sqrt(pooled * (1 - pooled) * (1 / nc + 1 / nt))
    assert got.z == pytest.approx(z) and got.p_value == pytest.approx(2 * norm.sf(abs(z)))
    log_se = math.sqrt(1 / ct - 1 / nt + 1 / cc - 1 / nc)                 # Katz log interval of the ratio
    assert got.relative == pytest.approx(pt / pc - 1)
    assert got.relative_low == pytest.approx(pt / pc * math.exp(-Z95 * log_se) - 1)
    assert got.relative_high == pytest.approx(pt / pc * math.exp(Z95 * log_se) - 1)
    assert got.p_value < 0.05 and got.absolute_low > 0 and got.relative_low > 0   # agree on significance


@pytest.mark.parametrize(("counts", "defined"), [
    ((0, 100, 0, 100), {"absolute"}),
    ((0, 100, 3, 100), {"absolute", "absolute_low", "absolute_high", "z", "p_value"}),
    ((3, 100, 0, 100), {"absolute", "absolute_low", "absolute_high", "z", "p_value", "relative"}),
    ((100, 100, 100, 100), {"absolute", "relative", "relative_low", "relative_high"}),
    ((0, 0, 3, 100), set()),
])
def test_lift_is_nan_exactly_where_undefined(counts, defined):
    got = two_proportion_lift(*counts).to_dict()
    stats = ("absolute", "absolute_low", "absolute_high", "relative", "relative_low", "relative_high", "z",
             "p_value")
    assert {key for key in stats if got[key] is not None} == defined
    if "relative" in defined and counts[2] == 0:
        assert got["relative"] == -1.0


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 400), st.integers(0, 400), st.data())
def test_lift_never_raises_and_matches_the_chi_square_test(nc, nt, data):
    cc = data.draw(st.integers(0, nc))
    ct = data.draw(st.integers(0, nt))
    got = two_proportion_lift(cc, nc, ct, nt)
    if not math.isnan(got.absolute_low):
        assert got.absolute_low <= got.absolute <= got.absolute_high
    if not math.isnan(got.p_value):
        table = np.array([[ct, nt - ct], [cc, nc - cc]])
        chi2 = chi2_contingency(table, correction=False)
        assert got.z**2 == pytest.approx(chi2.statistic, rel=1e-9)
        assert got.p_value == pytest.approx(chi2.pvalue, rel=1e-9)
        assert math.copysign(1, got.z) == math.copysign(1, got.absolute) or got.absolute == 0


def test_required_sample_size_matches_the_classic_formula_at_an_even_split():
    base, mde = 0.10, 0.02
    p1, p2 = base, base + mde
    per_arm = (Z95 + norm.ppf(0.8)) ** 2 * (p1 * (1 - p1) + p2 * (1 - p2)) / mde**2
    assert required_sample_size(base, mde) == pytest.approx(2 * per_arm, rel=0.01)


@pytest.mark.parametrize(("base", "mde", "alpha", "power", "split"), [
    (0.10, 0.02, 0.05, 0.8, 0.5), (0.10, 0.02, 0.05, 0.8, 0.3), (0.20, 0.03, 0.01, 0.9, 0.5),
    (0.05, 0.01, 0.05, 0.8, 0.7),
])
def test_required_sample_size_is_the_arcsine_closed_form(base, mde, alpha, power, split):
    h = 2 * math.asin(math.sqrt(base + mde)) - 2 * math.asin(math.sqrt(base))   # Cohen's h
    ratio = split / (1 - split)
    n_control = (norm.isf(alpha / 2) + norm.ppf(power)) ** 2 * (1 + 1 / ratio) / h**2
    total = required_sample_size(base, mde, alpha, power, split)
    assert total == pytest.approx(n_control * (1 + ratio), rel=1e-3)
    n_c = math.ceil(total * (1 - split))
    assert achieved_power(base, mde, n_c, total - n_c, alpha) == pytest.approx(power, abs=2e-3)
    assert required_sample_size(base, mde / 2, alpha, power, split) > 3.5 * total


def test_achieved_power_by_hand():
    base, mde, nc, nt = 0.10, 0.02, 3000, 2000
    h = 2 * math.asin(math.sqrt(base + mde)) - 2 * math.asin(math.sqrt(base))
    shift = h / math.sqrt(1 / nc + 1 / nt)
    assert achieved_power(base, mde, nc, nt) == pytest.approx(norm.cdf(shift - Z95) + norm.cdf(-shift - Z95))
    assert math.isnan(achieved_power(base, mde, 0, nt))
    assert achieved_power(base, mde, 100, 100) < achieved_power(base, mde, 1000, 1000)


@pytest.mark.parametrize(("call", "error", "match"), [
    (lambda: arm_rate("control", 5, 3), DataValidationError, "control: expected 0 <= conversions <= n"),
    (lambda: arm_rate("control", -1, 3), DataValidationError, "control: expected"),
    (lambda: arm_rate("control", 1, 3, alpha=1.0), ConfigError, "alpha: expected a value in"),
    (lambda: two_proportion_lift(1, 10, 11, 10), DataValidationError, "treatment: expected"),
    (lambda: two_proportion_lift(1, 10, 1, -10), DataValidationError, "treatment: expected"),
    (lambda: required_sample_size(0.0, 0.02), ConfigError, "base_rate: expected a rate in"),
    (lambda: required_sample_size(1.2, 0.02), ConfigError, "base_rate: expected a rate in"),
    (lambda: required_sample_size(0.1, 0.0), ConfigError, "mde: expected an absolute lift"),
    (lambda: required_sample_size(0.95, 0.05), ConfigError, "mde: expected an absolute lift"),
    (lambda: required_sample_size(0.1, 0.02, alpha=0.0), ConfigError, "alpha: expected"),
    (lambda: required_sample_size(0.1, 0.02, power=1.0), ConfigError, "power: expected"),
    (lambda: required_sample_size(0.1, 0.02, split=1.0), ConfigError, "split: expected"),
    (lambda: achieved_power(0.1, 0.02, -1, 10), DataValidationError, "arm sizes: expected counts >= 0"),
])
def test_invalid_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_docstring_examples():
    assert doctest.testmod(proportions).failed == 0
