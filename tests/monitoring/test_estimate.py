"""Estimated performance before labels mature, checked against sklearn, enumeration and coverage."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from leadscore.monitoring.estimate import (
    MIN_DELAYS,
    DelayCDF,
    _auc_from_ranks,
    backtest_estimates,
    conversion_delay_cdf,
    estimate_performance,
    open_probability,
    simulate_period,
)
from leadscore.monitoring.labels import known_by, label_scores

NOW = pd.Timestamp("2025-06-01", tz="UTC")


def test_auc_from_ranks_equals_sklearn_with_ties() -> None:
    rng = np.random.default_rng(0)
    p = np.round(rng.random(300), 1)  # many ties
    labels = (rng.random((5, 300)) < p).astype(float)
    from scipy.stats import rankdata

    got = _auc_from_ranks(labels, rankdata(p))
    want = [roc_auc_score(row, p) for row in labels]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_open_probability_by_bayes_rule() -> None:
    # p = 0.2, half of all conversions happen by now and this lead has not converted:
    # P(converts | not yet) = 0.2 * 0.5 / (1 - 0.2 * 0.5) = 0.1 / 0.9
    delay = DelayCDF(np.array([10.0, 30.0]))
    assert open_probability(np.array([0.2]), np.array([15.0]), delay)[0] == pytest.approx(0.1 / 0.9)
    assert open_probability(np.array([0.2]), np.array([5.0]), delay)[0] == pytest.approx(0.2)
    assert open_probability(np.array([0.2]), np.array([40.0]), delay)[0] == pytest.approx(0.0)
    assert open_probability(np.array([0.2]), np.array([40.0]), None)[0] == pytest.approx(0.2)


def test_expected_auc_matches_enumeration_of_every_outcome() -> None:
    p = np.array([0.9, 0.6, 0.4, 0.2, 0.1])
    num = den = 0.0
    for labels in itertools.product([0, 1], repeat=len(p)):
        y = np.array(labels)
        if 0 < y.sum() < len(y):
            weight = float(np.prod(np.where(y == 1, p, 1 - p)))
            num += weight * roc_auc_score(y, p)
            den += weight
    got = simulate_period(p, np.full(len(p), np.nan), p, None, n_sim=40_000, seed=1)
    assert got["est_roc_auc"] == pytest.approx(num / den, abs=0.005)
    assert got["est_conversion_rate"] == pytest.approx(p.mean(), abs=0.005)


def test_final_labels_close_the_interval_on_the_realized_value() -> None:
    rng = np.random.default_rng(3)
    p = rng.random(400)
    y = (rng.random(400) < p).astype(float)
    top = p > 0.8
    got = simulate_period(p, y, p, top, n_sim=50)
    for name, value in (("conversion_rate", y.mean()), ("roc_auc", roc_auc_score(y, p)),
                        ("top_tier_rate", y[top].mean())):
        assert got[f"est_{name}_low"] == pytest.approx(value)
        assert got[f"est_{name}_high"] == pytest.approx(value)


def test_intervals_cover_the_realized_value_about_as_often_as_promised() -> None:
    rng = np.random.default_rng(7)
    hits = {"conversion_rate": 0, "roc_auc": 0}
    trials = 200
    for t in range(trials):
        p = rng.beta(1, 6, 600)
        y = (rng.random(600) < p).astype(float)  # a calibrated model: labels drawn from its scores
        est = simulate_period(p, np.full(600, np.nan), p, None, n_sim=300, seed=t)
        low, high = est["est_conversion_rate_low"], est["est_conversion_rate_high"]
        hits["conversion_rate"] += low <= y.mean() <= high
        hits["roc_auc"] += est["est_roc_auc_low"] <= roc_auc_score(y, p) <= est["est_roc_auc_high"]
    for name, hit in hits.items():
        assert 0.90 <= hit / trials <= 0.99, (name, hit / trials)


def _scores(n: int, start: str, rng: np.random.Generator) -> pd.DataFrame:
    at = pd.Timestamp(start, tz="UTC") + pd.to_timedelta(rng.uniform(0, 120, n), unit="D")
    return pd.DataFrame({"lead_id": [f"L{i}" for i in range(n)], "model_version": "v1",
                         "probability": rng.beta(1, 5, n), "scored_at": at})


def _outcomes(scores: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    converts = rng.random(len(scores)) < scores["probability"]
    delay = pd.to_timedelta(rng.exponential(20, len(scores)).clip(0, 89), unit="D")
    hit = scores[converts]
    return pd.DataFrame({"lead_id": hit["lead_id"], "converted": True,
                         "converted_at": hit["scored_at"] + delay[converts],
                         "recorded_at": pd.Timestamp("2030-01-01", tz="UTC")})


def test_delay_distribution_uses_only_matured_converters() -> None:
    rng = np.random.default_rng(5)
    scores = _scores(3000, "2025-01-01", rng)
    labelled = label_scores(scores, _outcomes(scores, rng), window_days=90, now=NOW)
    delay = conversion_delay_cdf(labelled, window_days=90, now=NOW)
    assert delay is not None and len(delay.days) >= MIN_DELAYS
    matured = labelled[(labelled["matures_at"] <= NOW) & labelled["label"].eq(1.0)]
    assert len(delay.days) == len(matured)
    assert delay(np.array([20.0]))[0] == pytest.approx(1 - np.exp(-1), abs=0.08)
    assert conversion_delay_cdf(labelled.head(20), window_days=90, now=NOW) is None


def test_outcomes_count_from_the_day_they_were_known() -> None:
    outcomes = pd.DataFrame({
        "lead_id": ["a", "b", "c"], "converted": [True, False, True],
        "converted_at": pd.to_datetime(["2025-03-01", None, None], utc=True),
        "recorded_at": pd.to_datetime(["2025-05-01", "2025-03-10", "2025-04-01"], utc=True)})
    assert list(known_by(outcomes, pd.Timestamp("2025-03-05", tz="UTC"))["lead_id"]) == ["a"]
    assert list(known_by(outcomes, pd.Timestamp("2025-03-20", tz="UTC"))["lead_id"]) == ["a", "b"]
    assert len(known_by(outcomes, pd.Timestamp("2025-04-01", tz="UTC"))) == 3


def test_backtest_on_a_calibrated_population_holds_its_intervals() -> None:
    rng = np.random.default_rng(11)
    scores = _scores(8000, "2025-01-01", rng)
    outcomes = _outcomes(scores, rng)
    table = backtest_estimates(scores, outcomes, window_days=90, now=pd.Timestamp("2025-09-01", tz="UTC"),
                               by="week", n_sim=200)
    assert len(table) >= 15
    assert (table["open_then"] > 0).all()
    for name in ("conversion_rate", "roc_auc"):
        assert table[f"{name}_within"].mean() >= 0.8, table[[f"est_{name}", f"real_{name}"]]


def test_estimate_reports_open_leads_per_period() -> None:
    rng = np.random.default_rng(2)
    scores = _scores(2000, "2025-03-01", rng)
    labelled = label_scores(scores, _outcomes(scores, rng), window_days=90, now=NOW)
    table = estimate_performance(labelled, now=NOW, by="month", n_sim=100)
    assert table["leads"].sum() == 2000
    assert (table["open"] == table["leads"] - labelled.groupby(
        labelled["scored_at"].dt.tz_localize(None).dt.to_period("M"))["label"].count().to_numpy()).all()
    ok = table.dropna(subset=["est_roc_auc"])
    assert (ok["est_roc_auc_low"] <= ok["est_roc_auc"]).all()
    assert (ok["est_roc_auc"] <= ok["est_roc_auc_high"]).all()
