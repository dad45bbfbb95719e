"""The held-out record a model card reads: intervals, calibration, threshold, tiers, segments."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from leadscore.evaluation.comparison import bootstrap_ci
from leadscore.evaluation.holdout import holdout_summary, measure_models
from leadscore.evaluation.metrics import classification_metrics
from leadscore.evaluation.tiers import DEFAULT_TIERS


def sample(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    prob = rng.beta(1, 6, n)
    y = (rng.random(n) < prob).astype(int)
    segment = rng.choice(["north", "south", "tiny"], n, p=[0.6, 0.39, 0.01])
    return y, prob, segment


def test_summary_holds_metrics_intervals_threshold_tiers_and_segments():
    y, prob, segment = sample()
    summary = holdout_summary(y, prob, where="test", threshold=0.3, tiers=DEFAULT_TIERS,
                              segments={"region": segment}, n_boot=200, seed=7)
    json.dumps(summary, allow_nan=False)  # strict JSON: it goes into metadata.json
    assert summary["metrics"]["roc_auc"] == pytest.approx(roc_auc_score(y, prob), abs=1e-6)
    assert summary["rows"] == len(y) and summary["positives"] == int(y.sum())
    expected = bootstrap_ci(y, prob, ("roc_auc", "pr_auc", "brier", "log_loss"), n_boot=200, seed=7)
    assert {k: tuple(v) for k, v in summary["ci"].items()} == expected
    low, high = summary["ci"]["roc_auc"]
    assert low < summary["metrics"]["roc_auc"] < high
    flagged = prob >= 0.3
    assert summary["threshold"]["share_flagged"] == pytest.approx(flagged.mean())
    assert summary["threshold"]["precision"] == pytest.approx(y[flagged].mean())
    assert summary["threshold"]["recall"] == pytest.approx(y[flagged].sum() / y.sum())
    tiers = {t["name"]: t for t in summary["tiers"]}
    assert sum(t["share"] for t in tiers.values()) == pytest.approx(1.0)
    assert sum(t["converters_share"] for t in tiers.values()) == pytest.approx(1.0)
    high_tier = prob >= 0.7
    assert tiers["HIGH_PRIORITY"]["leads"] == int(high_tier.sum())
    assert sum(b["count"] for b in summary["calibration"]) == len(y) and len(summary["calibration"]) == 10
    rows = {r["segment"]: r for r in summary["segments"]["region"]}
    assert set(rows) == {"north", "south", "(other)"}  # "tiny" has under 30 leads: pooled
    north = segment == "north"
    assert rows["north"]["conversion_rate"] == pytest.approx(y[north].mean())
    assert rows["north"]["roc_auc"] == pytest.approx(roc_auc_score(y[north], prob[north]))


def test_a_segment_with_one_outcome_has_no_roc_auc_and_stays_strict_json():
    y, prob, _ = sample(400)
    segment = np.where(np.arange(400) < 50, "all_negative", "rest")
    y[:50] = 0
    summary = holdout_summary(y, prob, where="test", threshold=0.3, tiers=DEFAULT_TIERS,
                              segments={"s": segment}, n_boot=50)
    rows = {r["segment"]: r for r in summary["segments"]["s"]}
    assert rows["all_negative"]["roc_auc"] is None
    json.dumps(summary, allow_nan=False)


@settings(max_examples=15, deadline=None)
@given(st.integers(60, 400), st.integers(0, 10_000), st.floats(0.05, 0.95))
def test_tier_and_threshold_figures_add_up_for_any_sample(n, seed, threshold):
    y, prob, _ = sample(n, seed)
    y[:2] = [0, 1]
    summary = holdout_summary(y, prob, where="t", threshold=threshold, tiers=DEFAULT_TIERS, n_boot=20)
    assert sum(t["leads"] for t in summary["tiers"]) == n
    assert 0 <= summary["threshold"]["recall"] <= 1
    for t in summary["tiers"]:
        if t["leads"]:
            assert 0 <= t["conversion_rate"] <= 1


def test_measure_models_matches_the_metric_functions_and_improvement():
    y, prob, _ = sample()
    rng = np.random.default_rng(1)
    weak = np.clip(prob + rng.normal(0, 0.1, len(prob)), 0, 1)
    doc = measure_models(y, {"champion": prob, "rules": weak}, threshold=0.3,
                         threshold_info={"objective": "f1"})
    assert doc["test"] == doc["models"]["champion"]
    expected = classification_metrics(y, prob)
    assert doc["test"]["roc_auc"] == pytest.approx(expected["roc_auc"], abs=1e-6)
    assert doc["threshold"] == {"value": 0.3, "objective": "f1"}
    gain = 100 * (doc["models"]["champion"]["roc_auc"] / doc["models"]["rules"]["roc_auc"] - 1)
    assert doc["improvement_pct"]["vs_rules"]["roc_auc"] == pytest.approx(gain, abs=0.05)


def test_fast_bootstrap_auc_interval_equals_the_sklearn_bootstrap():
    """Same seed, same resamples: the O(n) interval equals bootstrap_ci's, which calls sklearn."""
    from leadscore.evaluation.comparison import bootstrap_auc_ci, weighted_auc_sorted

    y, prob, _ = sample(1500, seed=3)
    prob = np.round(prob, 2)  # many ties
    assert bootstrap_auc_ci(y, prob, n_boot=100, seed=9) == bootstrap_ci(y, prob, ("roc_auc",), n_boot=100,
                                                                         seed=9)["roc_auc"]
    order = np.argsort(prob, kind="stable")
    group = np.concatenate([[0], np.cumsum(np.diff(prob[order]) != 0)])
    weights = np.random.default_rng(0).integers(0, 3, len(y)).astype(float)
    assert weighted_auc_sorted(y[order], group, weights[order], int(group[-1]) + 1) == pytest.approx(
        roc_auc_score(y, prob, sample_weight=weights))
