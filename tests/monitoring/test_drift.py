"""Drift statistics against hand computations and scipy; states; what is not judged."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from leadscore.data.profile import categorical_profile, numeric_profile, table_profile
from leadscore.monitoring.drift import (
    ALERT,
    OK,
    TOO_FEW,
    DriftThresholds,
    categorical_drift,
    feature_drift,
    numeric_drift,
    psi,
    score_drift,
)


def test_psi_matches_the_formula_by_hand():
    expected, actual = np.array([0.5, 0.3, 0.2]), np.array([0.4, 0.4, 0.2])
    by_hand = (0.4 - 0.5) * math.log(0.4 / 0.5) + (0.4 - 0.3) * math.log(0.4 / 0.3) + 0.0
    assert psi(expected, actual) == pytest.approx(by_hand)
    assert psi(expected, expected) == 0.0
    # an empty bin is floored at 1e-4 instead of giving an infinite index
    assert psi(np.array([1.0, 0.0]), np.array([0.5, 0.5])) == pytest.approx(
        (0.5 - 1.0) * math.log(0.5 / 1.0) + (0.5 - 1e-4) * math.log(0.5 / 1e-4))


def test_numeric_drift_stays_quiet_on_the_same_distribution_and_fires_on_a_shift():
    rng = np.random.default_rng(0)
    reference = numeric_profile(pd.Series(rng.normal(0, 1, 20_000)))
    same = numeric_drift(reference, pd.Series(rng.normal(0, 1, 3000)))
    shifted = numeric_drift(reference, pd.Series(rng.normal(0.8, 1, 3000)))
    assert same["psi"] < 0.02 and same["ks_pvalue"] > 0.01
    assert shifted["psi"] > 0.25 and shifted["ks_pvalue"] < 1e-6


def test_ks_against_the_stored_quantiles_is_close_to_scipy_two_sample():
    rng = np.random.default_rng(1)
    train, new = rng.gamma(2.0, 3.0, 50_000), rng.gamma(2.4, 3.0, 2000)
    ours = numeric_drift(numeric_profile(pd.Series(train)), pd.Series(new))
    reference = stats.ks_2samp(new, train)
    assert ours["ks"] == pytest.approx(reference.statistic, abs=0.01)


def test_numeric_bins_by_hand_with_missing_values():
    reference = numeric_profile(pd.Series([1.0, 2.0, 3.0, 4.0, np.nan]), bins=2)
    assert reference["missing"] == pytest.approx(0.2)
    assert reference["edges"] == [2.5] and reference["shares"] == [0.5, 0.5]
    drift = numeric_drift(reference, pd.Series([1.0, 1.0, 1.0, 4.0]))
    expected = np.array([0.5 * 0.8, 0.5 * 0.8, 0.2])
    actual = np.array([0.75, 0.25, 0.0])
    assert drift["psi"] == pytest.approx(psi(expected, actual))


def test_categorical_drift_counts_unseen_values_by_hand():
    reference = categorical_profile(pd.Series(["web"] * 60 + ["referral"] * 40))
    new = pd.Series(["web"] * 50 + ["referral"] * 30 + ["social_ads"] * 20)
    drift = categorical_drift(reference, new)
    assert drift["unseen_share"] == pytest.approx(0.2)
    assert drift["unseen_values"] == {"social_ads": 20}
    expected = np.array([0.6, 0.4, 0.0, 0.0])  # web, referral, unseen, missing
    actual = np.array([0.5, 0.3, 0.2, 0.0])
    assert drift["psi"] == pytest.approx(psi(expected, actual))


def frames(n: int, seed: int, shift: float = 0.0, new_share: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    source = rng.choice(["web", "referral", "events"], n).astype(object)
    source[rng.random(n) < new_share] = "social_ads"
    return pd.DataFrame({"budget": rng.lognormal(9 + shift, 1, n), "source": source,
                         "created__month": rng.integers(1, 13, n), "calls": rng.poisson(2, n)})


def test_feature_drift_flags_the_new_source_skips_calendar_months_and_small_periods():
    profile = table_profile(frames(5000, 0), ["source"], scores=np.linspace(0, 1, 5000), threshold=0.9)
    quiet = feature_drift(profile, frames(2000, 1))
    assert set(quiet["state"]) == {OK} and "created__month" not in set(quiet["feature"])
    drifted = feature_drift(profile, frames(2000, 2, new_share=0.3).assign(created__month=5),
                            ignore=("calls",))
    top = drifted.iloc[0]
    assert top["feature"] == "source" and top["state"] == ALERT and "social_ads" in top["reason"]
    assert "calls" not in set(drifted["feature"])
    small = feature_drift(profile, frames(50, 3, shift=2.0), DriftThresholds(min_rows=200))
    assert set(small["state"]) == {TOO_FEW}


def test_score_drift_reports_the_predicted_positive_rate():
    profile = table_profile(frames(1000, 0), ["source"], scores=np.linspace(0, 1, 1000), threshold=0.9)
    assert profile["predicted_positive_rate"] == pytest.approx(0.1, abs=0.002)
    row = score_drift(profile, np.full(500, 0.95), threshold=0.9)
    assert row["predicted_positive_rate"] == 1.0 and row["state"] == ALERT
    assert "predicted positive 10.0% in training -> 100.0%" in row["reason"]


def test_a_large_psi_from_few_rows_over_many_categories_is_called_noise():
    """n * PSI is about Pearson's chi-square of the counts: compared with scipy on the same table."""
    from leadscore.monitoring.drift import noise_pvalue

    reference = categorical_profile(pd.Series([f"title {i}" for i in range(20)] * 500))
    rng = np.random.default_rng(4)
    small = pd.Series(rng.choice([f"title {i}" for i in range(20)], 210))
    drift = categorical_drift(reference, small)
    counts = small.value_counts().reindex([f"title {i}" for i in range(20)], fill_value=0).to_numpy()
    pearson = stats.chisquare(counts, np.full(20, 210 / 20))
    assert 210 * drift["psi"] == pytest.approx(pearson.statistic, rel=0.25)
    assert drift["psi"] > 0.10  # over the warn threshold ...
    table = feature_drift({"features": {"title": reference}}, pd.DataFrame({"title": small}))
    assert table.loc[0, "state"] == OK and "within sampling noise" in table.loc[0, "reason"]  # ... but noise
    assert noise_pvalue(drift["psi"], 210, drift["bins"]) == pytest.approx(
        stats.chi2.sf(210 * drift["psi"], drift["bins"] - 1))
