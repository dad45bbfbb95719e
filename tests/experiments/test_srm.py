"""The sample ratio check against the chi-square statistic computed by hand."""

from __future__ import annotations

import doctest
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chi2, norm

from leadscore.core.exceptions import ConfigError, DataValidationError
from leadscore.experiments import srm
from leadscore.experiments.srm import sample_ratio_check


def test_even_split_by_hand():
    got = sample_ratio_check(480, 520, split=0.5)
    statistic = (480 - 500) ** 2 / 500 + (520 - 500) ** 2 / 500               # 1.6
    assert got.chi2 == pytest.approx(statistic)
    assert got.p_value == pytest.approx(chi2.sf(statistic, df=1))
    assert got.p_value == pytest.approx(2 * norm.sf(math.sqrt(statistic)))    # chi2(1) = z**2
    assert got.observed_treatment_share == 0.52 and not got.mismatch


def test_uneven_split_flags_a_mismatch():
    assert sample_ratio_check(800, 200, split=0.2).chi2 == pytest.approx(0.0)
    got = sample_ratio_check(700, 300, split=0.2)
    assert got.chi2 == pytest.approx(100**2 / 800 + 100**2 / 200)              # 62.5
    assert got.p_value == pytest.approx(chi2.sf(62.5, df=1)) and got.mismatch
    assert got.to_dict()["mismatch"] is True
    assert not sample_ratio_check(700, 300, split=0.2, threshold=1e-20).mismatch


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 10_000), st.floats(0.05, 0.95))
def test_two_cell_chi_square_is_the_squared_z_of_the_share(nc, nt, split):
    got = sample_ratio_check(nc, nt, split)
    total = nc + nt
    if total == 0:
        assert (got.chi2, got.p_value, got.mismatch) == (0.0, 1.0, False)
        return
    expected = (nt - total * split) ** 2 / (total * split * (1 - split))
    assert got.chi2 == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert got.mismatch == (got.p_value < got.threshold)


def test_no_leads_is_no_mismatch():
    got = sample_ratio_check(0, 0, split=0.5)
    assert (got.p_value, got.mismatch) == (1.0, False) and math.isnan(got.observed_treatment_share)
    assert got.to_dict()["observed_treatment_share"] is None


@pytest.mark.parametrize(("args", "error", "match"), [
    ((10, 10, 0.0), ConfigError, "split: expected a treatment share in"),
    ((10, 10, 1.0), ConfigError, "split: expected"),
    ((10, -1, 0.5), DataValidationError, "arm sizes: expected counts >= 0"),
])
def test_invalid_arguments(args, error, match):
    with pytest.raises(error, match=match):
        sample_ratio_check(*args)
    with pytest.raises(ConfigError, match="threshold: expected"):
        sample_ratio_check(10, 10, 0.5, threshold=0)


def test_docstring_examples():
    assert doctest.testmod(srm).failed == 0
