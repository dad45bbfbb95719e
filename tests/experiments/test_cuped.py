"""CUPED against its definition (theta, adjusted outcome, difference of means, Welch standard error) and
against statsmodels' formula interface."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy.stats import norm

from leadscore.core.exceptions import DataValidationError
from leadscore.experiments.cuped import cuped_lift


def _experiment(n: int = 1500, strength: float = 1.0, seed: int = 3) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    x = rng.beta(2, 6, n)                          # model probability at scoring time
    treated = rng.integers(0, 2, n)
    y = strength * x + 0.05 * treated + rng.normal(0, 0.15, n)
    return y, x, treated


def _welch(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    return float(a.mean() - b.mean()), float(np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)))


def test_cuped_by_definition():
    y, x, t = _experiment()
    got = cuped_lift(y, x, t)
    # theta: pooled within-arm covariance over pooled within-arm variance
    xc = x - np.where(t == 1, x[t == 1].mean(), x[t == 0].mean())
    yc = y - np.where(t == 1, y[t == 1].mean(), y[t == 0].mean())
    theta = float(np.sum(xc * yc) / np.sum(xc**2))
    y_adj = y - theta * (x - x.mean())
    lift, se = _welch(y_adj[t == 1], y_adj[t == 0])
    plain_lift, plain_se = _welch(y[t == 1], y[t == 0])
    assert got.theta == pytest.approx(theta, abs=1e-9)
    assert got.lift == pytest.approx(lift, abs=1e-9)
    assert got.se == pytest.approx(se, rel=0.02)               # HC2 with x vs Welch on y_adj
    assert got.unadjusted_lift == pytest.approx(plain_lift, abs=1e-12)
    assert got.unadjusted_se == pytest.approx(plain_se, rel=1e-9)   # HC2 without x is exactly Welch
    z = norm.isf(0.025)
    assert (got.low, got.high) == (pytest.approx(got.lift - z * got.se), pytest.approx(got.lift + z * got.se))
    assert got.unadjusted_high == pytest.approx(plain_lift + z * plain_se)
    assert got.variance_reduction == pytest.approx(1 - (got.se / got.unadjusted_se) ** 2)


def test_cuped_agrees_with_statsmodels_formula_ols():
    y, x, t = _experiment(seed=11)
    data = pd.DataFrame({"y": y, "treated": t, "xc": x - x.mean()})
    hc2 = smf.ols("y ~ treated + xc", data).fit(cov_type="HC2")
    hc1 = smf.ols("y ~ treated + xc", data).fit(cov_type="HC1")
    got = cuped_lift(y, x, t, alpha=0.1)
    assert got.lift == pytest.approx(hc2.params["treated"], abs=1e-9)
    assert got.theta == pytest.approx(hc2.params["xc"], abs=1e-9)
    assert got.se == pytest.approx(hc2.bse["treated"], rel=1e-9)
    assert got.se == pytest.approx(hc1.bse["treated"], rel=0.01)
    assert got.low == pytest.approx(hc2.conf_int(0.1).loc["treated", 0], abs=1e-9)


def test_variance_reduction_follows_the_correlation():
    y, x, t = _experiment(n=4000, strength=1.0)
    correlated = cuped_lift(y, x, t)
    rho = np.corrcoef(y - 0.05 * t, x)[0, 1]
    assert correlated.variance_reduction > 0.3
    assert correlated.variance_reduction == pytest.approx(rho**2, abs=0.05)
    assert correlated.se < correlated.unadjusted_se
    independent = cuped_lift(y, np.random.default_rng(99).random(len(y)), t)
    assert abs(independent.variance_reduction) < 0.01
    assert independent.lift == pytest.approx(independent.unadjusted_lift, abs=0.2 * independent.se)


def test_binary_outcome_and_to_dict():
    rng = np.random.default_rng(5)
    x = rng.beta(2, 8, 3000)
    t = rng.random(3000) < 0.5
    y = (rng.random(3000) < x + 0.03 * t).astype(int)
    got = cuped_lift(y, x, t)
    assert 0 < got.variance_reduction < 1 and got.low < got.lift < got.high
    assert got.unadjusted_lift == pytest.approx(y[t].mean() - y[~t].mean())
    assert set(got.to_dict()) >= {"theta", "lift", "se", "variance_reduction"}


@pytest.mark.parametrize(("y", "x", "t", "match"), [
    ([0, 1, 0, 1], [0.1, np.nan, 0.3, 0.4], [0, 0, 1, 1], "x: expected a 1-d array of finite numbers"),
    ([0, 1, 0, 1], [0.2, 0.2, 0.2, 0.2], [0, 0, 1, 1], "x: expected a covariate that varies within the arms"),
    ([0, 1, 0, 1], [0.1, 0.1, 0.9, 0.9], [0, 0, 1, 1], "x: expected a covariate that varies within"),
    ([0, 1, 0], [0.1, 0.2, 0.3, 0.4], [0, 0, 1, 1], "y, x, treated: expected equal lengths, got 3, 4, 4"),
    ([0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4], [0, 0, 1, 2], "treated: expected 0/1"),
    ([0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4], [0, 0, 0, 1], "expected at least 2 leads per arm, got 3 control, 1"),
])
def test_invalid_inputs(y, x, t, match):
    with pytest.raises(DataValidationError, match=match):
        cuped_lift(y, x, t)
