from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadscore.core.exceptions import ConfigError, DataValidationError, TargetError
from leadscore.evaluation.tiers import (
    DEFAULT_TIERS,
    Tier,
    assign_tiers,
    choose_threshold,
    threshold_metrics,
    tiers_from_config,
)

# Hand-computable example: 4 positives among 10 leads, distinct probabilities.
PROB = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])
Y = np.array([1, 1, 0, 1, 0, 0, 1, 0, 0, 0])
# flag from   0.9  0.8  0.7   0.6  0.5   0.4  0.3   0.2   0.1    0.05
# precision   1    1    2/3   3/4  3/5   1/2  4/7   1/2   4/9    2/5
# F1          2/5  2/3  4/7   3/4  2/3   3/5  8/11  2/3   8/13   4/7


def test_tier_boundaries_with_default_tiers():
    names, actions = assign_tiers([0.7, 0.6999, 0.5, 0.4999, 0.3, 0.2999, 0.0, 1.0])
    assert list(names) == ["HIGH_PRIORITY", "MEDIUM_PRIORITY", "MEDIUM_PRIORITY", "NURTURE", "NURTURE",
                           "LOW_PRIORITY", "LOW_PRIORITY", "HIGH_PRIORITY"]
    assert actions[0] == "Call within 1 hour: senior rep, personalised offer"
    assert actions[-2] == "Automated nurture only"
    empty_names, _ = assign_tiers([])
    assert len(empty_names) == 0


@pytest.mark.parametrize("prob", [[0.2, np.nan], [1.01], [-0.1], [[0.1, 0.2]]])
def test_assign_tiers_rejects_invalid_probabilities(prob):
    with pytest.raises(DataValidationError, match="probabilities: expected"):
        assign_tiers(prob)


def test_tiers_from_config_round_trip_and_custom_tiers():
    items = [{"name": t.name, "min_probability": t.min_probability, "action": t.action}
             for t in DEFAULT_TIERS]
    assert tiers_from_config(items) == DEFAULT_TIERS
    two = tiers_from_config([{"name": "CALL", "min_probability": 0.25, "action": "call"},
                             {"name": "WAIT", "min_probability": 0, "action": "wait"}])
    names, actions = assign_tiers([0.25, 0.2499], two)
    assert list(names) == ["CALL", "WAIT"] and list(actions) == ["call", "wait"]


def _tier(name: str, low: object) -> dict[str, object]:
    return {"name": name, "min_probability": low, "action": f"do {name}"}


@pytest.mark.parametrize(("items", "message"), [
    ([_tier("A", 0.5), _tier("A", 0.0)], "expected unique names, got A more than once"),
    ([_tier("A", 1.5), _tier("B", 0.0)], r"min_probability: expected a number in \[0, 1\], got 1.5"),
    ([_tier("A", "high"), _tier("B", 0.0)], r"min_probability: expected a number in \[0, 1\]"),
    ([_tier("A", 0.3), _tier("B", 0.6), _tier("C", 0.0)], "expected min_probability strictly descending"),
    ([_tier("A", 0.5), _tier("B", 0.5), _tier("C", 0.0)], "expected min_probability strictly descending"),
    ([_tier("A", 0.5), _tier("B", 0.1)], "lowest min_probability to be 0.0 so every lead gets a tier"),
    ([], "expected at least one tier"),
    ([{"name": "A", "min_probability": 0.0}], r"tiers\[0\]: expected keys .*got no action"),
    ([_tier("A", 0.0) | {"colour": "red"}], r"tiers\[0\]: .*got unknown colour"),
    ([_tier("", 0.0)], r"tiers\[0\]: name: expected a non-empty string"),
    ("HIGH", "tiers: expected a list of mappings, got str"),
])
def test_tiers_from_config_rejects_bad_tiers(items, message):
    with pytest.raises(ConfigError, match=message):
        tiers_from_config(items)


def test_assign_tiers_validates_tier_objects():
    with pytest.raises(ConfigError, match="lowest min_probability"):
        assign_tiers([0.5], (Tier("ONLY", 0.4, "call"),))


def test_threshold_metrics_by_hand():
    metrics = threshold_metrics(PROB, Y, 0.6)  # flags 4 leads: 3 positives, 1 negative
    assert metrics == pytest.approx({"accuracy": 0.8, "precision": 0.75, "recall": 0.75, "f1": 0.75,
                                     "share_flagged": 0.4})
    nothing = threshold_metrics(PROB, Y, 0.95)
    assert nothing["precision"] == 0.0 and nothing["recall"] == 0.0 and nothing["accuracy"] == 0.6


def test_f1_objective_picks_the_best_f1_threshold():
    choice = choose_threshold(PROB, Y)
    assert (choice.threshold, choice.objective) == (0.6, "f1")
    assert (choice.precision, choice.recall, choice.f1, choice.share_flagged) == pytest.approx(
        (0.75, 0.75, 0.75, 0.4))
    assert choice.detail == "f1: threshold maximising F1 (0.600, F1 0.750)"


@pytest.mark.parametrize(("target", "threshold", "precision"), [
    (0.75, 0.6, 0.75), (0.7, 0.6, 0.75), (0.76, 0.8, 1.0), (1.0, 0.8, 1.0), (0.55, 0.3, 4 / 7)])
def test_precision_objective_picks_the_lowest_threshold_reaching_the_target(target, threshold, precision):
    choice = choose_threshold(PROB, Y, objective="precision", target_precision=target)
    assert choice.threshold == threshold
    assert choice.precision == pytest.approx(precision)
    assert choice.detail.startswith(f"precision: lowest threshold with precision >= {target:g}")


def test_precision_target_unreachable_raises():
    with pytest.raises(ConfigError, match="target_precision 0.9 is never reached.*best is 0.500"):
        choose_threshold(PROB[2:], Y[2:], objective="precision", target_precision=0.9)


def test_capacity_objective_flags_the_top_share():
    choice = choose_threshold(PROB, Y, objective="capacity", capacity_share=0.3)
    assert choice.threshold == 0.7
    assert (choice.share_flagged, choice.precision, choice.recall) == pytest.approx((0.3, 2 / 3, 0.5))
    assert choice.detail == "capacity: top 30% of leads (threshold 0.700)"
    per_day = choose_threshold(PROB, Y, objective="capacity", capacity_per_day=20, leads_per_day=100)
    assert (per_day.threshold, per_day.share_flagged) == (0.8, pytest.approx(0.2))
    assert per_day.detail == "capacity: 20 calls for 100 leads a day = top 20% of leads (threshold 0.800)"
    everyone = choose_threshold(PROB, Y, objective="capacity", capacity_per_day=150, leads_per_day=100)
    assert (everyone.threshold, everyone.share_flagged) == (0.05, 1.0)
    tiny = choose_threshold(PROB, Y, objective="capacity", capacity_share=0.01)
    assert tiny.threshold == 0.9  # at least one lead is flagged


def test_capacity_flags_ties_together():
    choice = choose_threshold([0.5, 0.5, 0.5, 0.1], [1, 0, 0, 0], objective="capacity", capacity_share=0.25)
    assert choice.threshold == 0.5 and choice.share_flagged == 0.75


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"objective": "roi"}, "unknown objective 'roi' \\(expected one of capacity, f1, precision\\)"),
    ({"objective": "capacity"}, "expected capacity_share, or capacity_per_day and leads_per_day"),
    ({"objective": "capacity", "capacity_per_day": 10}, "expected capacity_share, or capacity_per_day"),
    ({"objective": "capacity", "capacity_share": 0.1, "capacity_per_day": 5, "leads_per_day": 50},
     "got both"),
    ({"objective": "capacity", "capacity_share": 0.0}, r"capacity_share: expected a number in \(0, 1\]"),
    ({"objective": "capacity", "capacity_per_day": 0, "leads_per_day": 10}, "expected capacity_per_day"),
    ({"objective": "precision"}, "expected target_precision, got none"),
    ({"objective": "precision", "target_precision": 1.2}, r"target_precision: expected a number in \(0, 1\]"),
    ({"objective": "f1", "capacity_share": 0.1}, "objective 'f1': expected no capacity_share"),
    ({"objective": "capacity", "capacity_share": 0.1, "target_precision": 0.5},
     "expected no target_precision"),
])
def test_choose_threshold_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        choose_threshold(PROB, Y, **kwargs)


def test_choose_threshold_rejects_bad_labels():
    with pytest.raises(TargetError, match="expected only 0 and 1"):
        choose_threshold(PROB, np.full(10, 2))
    with pytest.raises(TargetError, match="expected 10 values"):
        choose_threshold(PROB, Y[:-1])
    with pytest.raises(TargetError, match="expected at least one positive"):
        choose_threshold(PROB, np.zeros(10, dtype=int))
    with pytest.raises(DataValidationError, match="expected at least one value"):
        choose_threshold([], [])


@st.composite
def tier_sets(draw: st.DrawFn) -> tuple[Tier, ...]:
    lows = draw(st.lists(st.floats(min_value=0.0, max_value=1.0, exclude_min=True), max_size=5, unique=True))
    lows = sorted(lows, reverse=True) + [0.0]
    return tuple(Tier(f"T{i}", low, f"action {i}") for i, low in enumerate(lows))


@settings(max_examples=200, deadline=None)
@given(prob=st.lists(st.floats(min_value=0.0, max_value=1.0), max_size=50),
       tiers=st.one_of(st.just(DEFAULT_TIERS), tier_sets()))
def test_every_probability_gets_exactly_one_tier_and_tiers_are_monotone(prob, tiers):
    names, actions = assign_tiers(prob, tiers)
    rank = {t.name: i for i, t in enumerate(tiers)}
    for p, name, action in zip(prob, names, actions, strict=True):
        matching = [i for i, t in enumerate(tiers)
                    if p >= t.min_probability and (i == 0 or p < tiers[i - 1].min_probability)]
        assert matching == [rank[name]]  # exactly one tier's band contains p, and it is the one given
        assert action == tiers[rank[name]].action
    ranks = [rank[n] for _, n in sorted(zip(prob, names, strict=True), key=lambda pair: pair[0])]
    assert ranks == sorted(ranks, reverse=True)  # a higher probability never gets a lower tier


def test_capacity_tiers_cut_the_out_of_fold_scores_at_their_shares():
    from leadscore.evaluation.tiers import capacity_tiers

    rng = np.random.default_rng(0)
    prob = rng.beta(1, 6, 10_000)
    y = (rng.random(10_000) < prob).astype(int)
    items = [{"name": "HOT", "share": 0.03, "action": "call now"},
             {"name": "WARM", "share": 0.07, "action": "call today"},
             {"name": "COLD", "action": "nurture"}]
    tiers, plan = capacity_tiers(items, prob, y)
    assert [t.name for t in tiers] == ["HOT", "WARM", "COLD"] and tiers[-1].min_probability == 0.0
    assert tiers[0].min_probability == pytest.approx(np.quantile(prob, 0.97))
    assert tiers[1].min_probability == pytest.approx(np.quantile(prob, 0.90))
    names, _ = assign_tiers(prob, tiers)
    assert [p["share"] for p in plan] == pytest.approx([0.03, 0.07, 0.90], abs=0.001)
    for row in plan:
        assert row["expected_conversion"] == pytest.approx(y[names == row["name"]].mean(), abs=1e-4)
    assert plan[0]["expected_conversion"] > plan[1]["expected_conversion"] > plan[2]["expected_conversion"]
    # per day: 30 of 1,000 leads a day is the same 3%
    daily = [{"name": "HOT", "per_day": 30, "action": "a"}, {"name": "REST", "action": "b"}]
    by_day, _ = capacity_tiers(daily, prob, y, leads_per_day=1000)
    assert by_day[0].min_probability == pytest.approx(tiers[0].min_probability)


@pytest.mark.parametrize(("items", "message"), [
    ([{"name": "A", "action": "a"}, {"name": "B", "action": "b"}], "expected share in (0, 1) or per_day"),
    ([{"name": "A", "share": 0.6, "action": "a"}, {"name": "B", "share": 0.5, "action": "b"},
      {"name": "C", "action": "c"}], "add up to 1.1"),
    ([{"name": "A", "per_day": 5, "action": "a"}, {"name": "B", "action": "b"}],
     "per_day needs creation times"),
    ([{"name": "A", "share": 0.1, "action": "a", "colour": "red"}, {"name": "B", "action": "b"}],
     "unknown colour"),
])
def test_capacity_tiers_errors(items, message):
    from leadscore.evaluation.tiers import capacity_tiers

    with pytest.raises(ConfigError, match=re.escape(message)):
        capacity_tiers(items, np.linspace(0, 1, 100), np.zeros(100))
