from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from crm_factory import make_crm
from sklearn.base import clone

from leadscore.core.exceptions import ConfigError, DataValidationError, TargetError
from leadscore.data.snapshot import build_snapshot, feature_columns
from leadscore.modeling.rules import DEMO_RULES, OPS, Rule, RuleScorer, rules_from_config


@pytest.fixture
def X() -> pd.DataFrame:  # noqa: N802
    """Prepared features: numeric float64 with NaN, categories as casefolded object strings."""
    return pd.DataFrame({
        "n": [0.0, 1.0, 2.0, 3.0, np.nan],
        "cat": pd.Series(["web", "referral", "partner", np.nan, "web form"], dtype=object),
    })


def _training(n: int = 200, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"quotes": rng.poisson(0.6, n).astype(float),  # noqa: N806
                      "source": rng.choice(np.array(["web", "referral"], dtype=object), n)})
    logit = -1.5 + 1.2 * (X["quotes"] >= 1) + 0.8 * (X["source"] == "referral")
    y = (rng.random(n) < 1 / (1 + np.exp(-logit.to_numpy(float)))).astype(int)
    return X, y


@pytest.mark.parametrize(("feature", "op", "value", "hits"), [
    ("n", ">=", 2, [0, 0, 1, 1, 0]),
    ("n", ">", 2, [0, 0, 0, 1, 0]),
    ("n", "<=", 1, [1, 1, 0, 0, 0]),
    ("n", "<", 1, [1, 0, 0, 0, 0]),
    ("n", "==", 1, [0, 1, 0, 0, 0]),
    ("n", "!=", 1, [1, 0, 1, 1, 0]),          # NaN never matches, not even "!="
    ("n", "in", [0, 3], [1, 0, 0, 1, 0]),
    ("n", "missing", None, [0, 0, 0, 0, 1]),
    ("n", "present", None, [1, 1, 1, 1, 0]),
    ("n", "==", "1", [0, 0, 0, 0, 0]),        # a string never equals a number
    ("cat", "==", " Referral ", [0, 1, 0, 0, 0]),
    ("cat", "!=", "WEB", [0, 1, 1, 0, 1]),
    ("cat", "in", ["PARTNER", "Web   Form"], [0, 0, 1, 0, 1]),
    ("cat", ">=", 0, [0, 0, 0, 0, 0]),        # categories never satisfy an order comparison
    ("cat", "missing", None, [0, 0, 0, 1, 0]),
    ("cat", "present", None, [1, 1, 1, 0, 1]),
])
def test_points_for_every_op(X, feature, op, value, hits):  # noqa: N803
    scorer = RuleScorer((Rule(feature, op, value, points=7.0),))
    np.testing.assert_array_equal(scorer.points(X), 7.0 * np.array(hits))


def test_points_add_up_and_rule_points_has_one_column_per_rule(X):  # noqa: N803
    rules = (Rule("n", ">=", 1, 10, "Engaged"), Rule("cat", "==", "referral", 5),
             Rule("n", "missing", points=-3, label="Engaged"))
    table = RuleScorer(rules).rule_points(X)
    assert list(table.columns) == ["Engaged", "cat == 'referral'", "Engaged (2)"]
    assert table.index.equals(X.index)
    np.testing.assert_array_equal(table.sum(axis=1), [0, 15, 10, 10, -3])
    np.testing.assert_array_equal(RuleScorer(rules).points(X), [0, 15, 10, 10, -3])


def test_string_dtype_and_numbers_as_text_are_compared():
    frame = pd.DataFrame({"cat": pd.Series(["A", None], dtype="string"), "n": ["5", "x"]})
    scorer = RuleScorer((Rule("cat", "==", "a", 1), Rule("n", ">", 4, 10)))
    np.testing.assert_array_equal(scorer.points(frame), [11, 0])


def test_absent_features_are_skipped_with_a_warning(caplog):
    X, y = _training()  # noqa: N806
    rules = (Rule("quotes", ">=", 1, 20), Rule("meetings", ">=", 1, 30), Rule("budget", "missing", points=-5))
    with caplog.at_level(logging.WARNING, logger="leadscore.modeling.rules"):
        scorer = RuleScorer(rules).fit(X, y)
    assert scorer.skipped_rules_ == rules[1:]
    assert scorer.rules_ == rules[:1]
    assert "budget, meetings" in caplog.text
    assert list(scorer.rule_points(X).columns) == ["quotes >= 1"]
    assert scorer.points_range_ == (0.0, 20.0)
    assert scorer.predict_proba(X.drop(columns="source")).shape == (len(X), 2)


def test_feature_absent_at_scoring_earns_nothing():
    X, y = _training()  # noqa: N806
    scorer = RuleScorer((Rule("quotes", ">=", 1, 20), Rule("source", "==", "referral", 10))).fit(X, y)
    np.testing.assert_array_equal(scorer.points(X[["quotes"]]), np.where(X["quotes"] >= 1, 20.0, 0.0))


@pytest.mark.parametrize("calibration", ["platt", "isotonic"])
def test_predict_proba_is_monotone_in_points(calibration):
    X, y = _training()  # noqa: N806
    scorer = RuleScorer((Rule("quotes", ">=", 1, 20), Rule("source", "==", "referral", 10)),
                        calibration=calibration).fit(X, y)
    proba = scorer.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    order = np.argsort(scorer.points(X), kind="stable")
    assert np.all(np.diff(proba[order, 1]) >= -1e-12)
    by_points = pd.Series(proba[:, 1]).groupby(scorer.points(X)).mean()
    assert by_points.iloc[-1] > by_points.iloc[0] + 0.2  # the data really reward points
    np.testing.assert_array_equal(scorer.predict(X), (proba[:, 1] >= 0.5).astype(int))
    assert list(scorer.classes_) == [0, 1]


def test_platt_probabilities_match_observed_rates():
    X, y = _training(n=2000)  # noqa: N806
    scorer = RuleScorer((Rule("quotes", ">=", 1, 1),)).fit(X, y)
    prob = scorer.predict_proba(X)[:, 1]
    hot = (X["quotes"] >= 1).to_numpy()
    assert prob[hot].mean() == pytest.approx(y[hot].mean(), abs=0.02)
    assert prob[~hot].mean() == pytest.approx(y[~hot].mean(), abs=0.02)


def test_rules_that_rank_backwards_never_reorder_leads(caplog):
    X, y = _training(n=1000)  # noqa: N806
    with caplog.at_level(logging.WARNING, logger="leadscore.modeling.rules"):
        scorer = RuleScorer((Rule("quotes", ">=", 1, -30),)).fit(X, y)
    prob = scorer.predict_proba(X)[:, 1]
    np.testing.assert_allclose(prob, y.mean())
    assert "fewer conversions" in caplog.text


def test_clone_and_get_params_round_trip():
    X, y = _training()  # noqa: N806
    rules = rules_from_config(DEMO_RULES[:3])
    scorer = RuleScorer(rules, calibration="isotonic").fit(X, y)
    copy = clone(scorer)
    assert copy.get_params() == {"rules": rules, "calibration": "isotonic"}
    assert not hasattr(copy, "rules_")
    rebuilt = RuleScorer(**scorer.get_params())
    assert rebuilt.get_params() == scorer.get_params()
    assert rebuilt.set_params(calibration="platt").calibration == "platt"


def test_predict_before_fit_raises():
    from sklearn.exceptions import NotFittedError
    X, _ = _training()  # noqa: N806
    with pytest.raises(NotFittedError):
        RuleScorer((Rule("quotes", ">=", 1, 1),)).predict_proba(X)


def test_rules_from_config_builds_rules():
    rules = rules_from_config([{"feature": "source", "op": "in", "value": ["referral", "partner"],
                                "points": 10, "label": "Referral"},
                               {"feature": "budget", "op": "missing"}])
    assert rules[0] == Rule("source", "in", ("referral", "partner"), 10.0, "Referral")
    assert rules[1].points == 0.0 and rules[1].name == "budget missing"
    hash(rules)  # frozen and hashable, lists included


@pytest.mark.parametrize(("items", "message"), [
    ([{"feature": "a", "op": ">=", "value": 1}, {"feature": "b", "op": "=>", "value": 1}],
     r"rules\[1\]: unknown op '=>' \(expected one of >=, >, <=, <, ==, !=, in, missing, present\)"),
    ([{"feature": "a", "op": ">=", "value": "high"}], r"rules\[0\]: op '>=': expected a finite number"),
    ([{"feature": "a", "op": "<", "value": float("nan")}], r"expected a finite number, got nan"),
    ([{"feature": "a", "op": "in", "value": "referral"}], r"op 'in': expected a non-empty list"),
    ([{"feature": "a", "op": "in", "value": []}], r"op 'in': expected a non-empty list"),
    ([{"feature": "a", "op": "in", "value": ["x", None]}], r"expected numbers or strings, got None"),
    ([{"feature": "a", "op": "==", "value": None}], r"expected a number or string, got None"),
    ([{"feature": "a", "op": "==", "value": 1, "points": True}], r"points: expected a finite number"),
    ([{"feature": "", "op": "present"}], r"feature: expected a non-empty string"),
    ([{"feature": "a", "op": "present", "pts": 3}], r"rules\[0\]: .*got unknown pts"),
    ([{"op": "present"}], r"rules\[0\]: .*got no feature"),
    (["a >= 1"], r"rules\[0\]: expected a mapping, got str"),
    ({"feature": "a"}, r"rules: expected a list of mappings, got dict"),
])
def test_rules_from_config_rejects_bad_rules(items, message):
    with pytest.raises(ConfigError, match=message):
        rules_from_config(items)


def test_invalid_rule_and_scorer_arguments():
    with pytest.raises(ConfigError, match="unknown op '~'"):
        Rule("a", "~", 1)
    X, y = _training()  # noqa: N806
    with pytest.raises(ConfigError, match="calibration: expected one of platt, isotonic, got 'beta'"):
        RuleScorer((), calibration="beta").fit(X, y)
    with pytest.raises(ConfigError, match=r"rules\[0\]: expected a Rule, got dict"):
        RuleScorer(DEMO_RULES).fit(X, y)
    with pytest.raises(DataValidationError, match="expected a pandas DataFrame"):
        RuleScorer(()).fit(X.to_numpy(), y)
    with pytest.raises(TargetError, match="expected both classes"):
        RuleScorer(()).fit(X, np.zeros(len(X)))
    with pytest.raises(TargetError, match="expected only 0 and 1"):
        RuleScorer(()).fit(X, np.full(len(X), 2))
    with pytest.raises(TargetError, match="expected 200 values"):
        RuleScorer(()).fit(X, y[:-1])


def test_demo_rules_parse_and_use_only_snapshot_columns():
    rules = rules_from_config(DEMO_RULES)
    assert {r.op for r in rules} <= set(OPS)
    tables = make_crm(n_leads=20, seed=1)
    snapshot = build_snapshot(tables["leads"], tables["activities"], snapshot_days=7,
                              exclude=["sales_status"])
    assert {r.feature for r in rules} <= set(feature_columns(snapshot))


def test_demo_rules_score_a_hot_and_a_cold_lead():
    columns = {r.feature for r in rules_from_config(DEMO_RULES)}
    hot = {c: 0.0 for c in columns} | {
        "quote_requests": 1.0, "meetings": 2.0, "pricing_page_views": 3.0, "seniority": "vp",
        "source": "referral", "email_domain_type": "business", "budget": 50000.0, "emails_opened": 4.0,
        "first_response_hours": 0.5, "has_phone": 1.0, "days_since_last_inbound": 0.5,
        "note_not_interested": 0.0}
    cold = {c: 0.0 for c in columns} | {
        "seniority": "student", "source": "web_form", "email_domain_type": "free", "budget": np.nan,
        "first_response_hours": np.nan, "days_since_last_inbound": np.nan, "note_not_interested": 1.0}
    X = pd.DataFrame([hot, cold])  # noqa: N806
    scorer = RuleScorer(rules_from_config(DEMO_RULES))
    # hot: quote 25 + meeting 20 + pricing 10 + senior 10 + referral 10 + budget 5 + opens 5 + fast 5
    # cold: no engagement -10, student -10, free mail -10, no phone -5, not interested -25
    np.testing.assert_array_equal(scorer.points(X), [90.0, -60.0])
    y = np.array([1, 0] * 10)
    fitted = RuleScorer(rules_from_config(DEMO_RULES)).fit(pd.concat([X] * 10, ignore_index=True), y)
    assert fitted.skipped_rules_ == ()
    prob = fitted.predict_proba(X)[:, 1]
    assert prob[0] > 0.9 > 0.1 > prob[1]
