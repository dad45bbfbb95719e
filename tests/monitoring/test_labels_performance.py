"""Label maturity (an open lead is never a negative) and realized performance against sklearn."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from leadscore.monitoring.labels import CONVERTED, EXPIRED, LATE, LOST, OPEN, label_scores
from leadscore.monitoring.performance import calibration_by_period, period_of, realized_performance

T0 = pd.Timestamp("2025-01-01", tz="UTC")


def test_label_maturity_rules_by_hand():
    scores = pd.DataFrame({
        "lead_id": ["won", "late", "lost", "old", "young", "won"],
        "model_version": ["v1"] * 6,
        "probability": [0.9, 0.5, 0.2, 0.1, 0.3, 0.8],
        "scored_at": [T0, T0, T0, T0, T0 + pd.Timedelta(days=80), T0 + pd.Timedelta(days=5)],
    })
    outcomes = pd.DataFrame({"lead_id": ["won", "late", "lost"], "converted": [True, True, False],
                             "converted_at": [T0 + pd.Timedelta(days=10), T0 + pd.Timedelta(days=95),
                                              pd.NaT]})
    now = T0 + pd.Timedelta(days=100)
    out = label_scores(scores, outcomes, window_days=90, now=now).set_index("lead_id")
    assert len(out) == 5  # "won" was scored twice by v1: its first score counts
    assert out.loc["won", "probability"] == 0.9
    expected = {"won": (1.0, CONVERTED), "late": (0.0, LATE), "lost": (0.0, LOST), "old": (0.0, EXPIRED)}
    for lead, (label, status) in expected.items():
        assert (out.loc[lead, "label"], out.loc[lead, "label_status"]) == (label, status), lead
    assert np.isnan(out.loc["young", "label"]) and out.loc["young", "label_status"] == OPEN
    # the same lead, judged before its window ends: still open, not a negative
    earlier = label_scores(scores, outcomes, window_days=90, now=T0 + pd.Timedelta(days=60))
    assert earlier.set_index("lead_id").loc["old", "label_status"] == OPEN


def test_periods_start_on_monday_or_the_first_of_the_month():
    times = pd.Series(pd.to_datetime(["2025-06-04 10:00", "2025-06-08 23:00", "2025-06-09 00:00"], utc=True))
    assert list(period_of(times, "week")) == ["2025-06-02", "2025-06-02", "2025-06-09"]
    assert list(period_of(times, "month")) == ["2025-06-01"] * 3


def test_realized_performance_matches_sklearn_and_needs_enough_labels():
    rng = np.random.default_rng(0)
    n = 1200
    prob = rng.beta(1, 5, n)
    label = (rng.random(n) < prob).astype(float)
    label[:100] = np.nan  # open leads: not counted
    frame = pd.DataFrame({"model_version": "v1", "probability": prob, "label": label,
                          "scored_at": T0 + pd.to_timedelta(np.arange(n) % 60, unit="D"),
                          "tier": np.where(prob >= 0.4, "HIGH", "LOW"),
                          "segment": np.where(np.arange(n) % 2, "a", "b")})
    table = realized_performance(frame, by="month", min_labelled=100, top_tier="HIGH")
    assert list(table["period"]) == ["2025-01-01", "2025-02-01", "2025-03-01"][:len(table)]
    jan = table.iloc[0]
    part = frame[(frame["scored_at"] < pd.Timestamp("2025-02-01", tz="UTC")) & frame["label"].notna()]
    assert jan["labelled"] == len(part) and jan["roc_auc"] == pytest.approx(roc_auc_score(part["label"],
                                                                                          part["probability"]),
                                                                            abs=1e-6)
    assert jan["roc_auc_low"] < jan["roc_auc"] < jan["roc_auc_high"]
    top = part[part["tier"] == "HIGH"]
    assert jan["top_tier_rate"] == pytest.approx(top["label"].mean())
    assert jan["open"] == int(frame.loc[frame["scored_at"] < pd.Timestamp("2025-02-01", tz="UTC"),
                                        "label"].isna().sum())
    strict = realized_performance(frame, by="month", min_labelled=10_000)
    assert "roc_auc" not in strict.columns  # no period has enough labels: no figure at all
    assert strict["note"].str.contains("need 10000").all()
    by_segment = realized_performance(frame, by="month", segment="segment")
    assert set(by_segment["segment"]) == {"a", "b"}


def test_calibration_curve_per_matured_period_by_hand():
    # two weeks of 100 leads; the second still has an open lead, so only the first gets a curve
    rng = np.random.default_rng(4)
    p = rng.random(200)
    frame = pd.DataFrame({"model_version": "v1", "probability": p,
                          "label": (rng.random(200) < p).astype(float),
                          "scored_at": pd.to_datetime(["2025-03-03"] * 100 + ["2025-03-10"] * 100, utc=True)})
    frame.loc[150, "label"] = np.nan
    curves = calibration_by_period(frame, by="week", bins=4, min_labelled=50)
    assert list(curves["period"].unique()) == ["2025-03-03"] and list(curves["bin"]) == [1, 2, 3, 4]
    first = frame.iloc[:100].sort_values("probability")
    for b in range(4):
        part, row = first.iloc[25 * b: 25 * (b + 1)], curves.iloc[b]
        assert row["count"] == 25
        assert row["predicted"] == pytest.approx(part["probability"].mean(), abs=1e-5)
        assert row["observed"] == pytest.approx(part["label"].mean(), abs=1e-5)
