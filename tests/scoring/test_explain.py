from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, logit
from sklearn.neighbors import KNeighborsClassifier

from leadscore.core.exceptions import DataValidationError
from leadscore.data.schema import infer_schema, prepare_features
from leadscore.modeling import candidates as models
from leadscore.modeling.calibration import Calibrator
from leadscore.modeling.candidates import make_model
from leadscore.modeling.ensemble import LeadModel
from leadscore.modeling.rules import Rule, RuleScorer
from leadscore.modeling.segments import SegmentedModel
from leadscore.scoring.explain import (
    Contributions,
    UnsupportedModelError,
    _member_margins,
    _probability,
    _source_feature,
    contributions,
)
from leadscore.scoring.reasons import FEATURE_TEXT, Reason, describe, score_points, top_reasons

SMALL = {"lightgbm": {"n_estimators": 60}, "xgboost": {"n_estimators": 60}, "catboost": {"iterations": 60},
         "random_forest": {"n_estimators": 40}}
CASES = {**{name: (name, SMALL.get(name, {})) for name in models.CANDIDATES},
         "logistic+smote": ("logistic", {"smote": True})}
TOL = 1e-6


def make_table(n: int, seed: int) -> pd.DataFrame:
    """Conversion depends on an awkwardly named amount with gaps, on the source and a little on plan."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    source = rng.choice(["Web", "referral", "Event", "fax"], n, p=[0.5, 0.25, 0.22, 0.03])  # fax: rare
    plan = rng.choice(["basic", "pro", None], n, p=[0.5, 0.3, 0.2])
    y = rng.random(n) < expit(-1.2 + 1.5 * signal + 1.2 * (source == "referral") + 0.5 * (plan == "pro"))
    return pd.DataFrame({
        "x [usd]": np.where(rng.random(n) < 0.2, np.nan, signal + rng.normal(0, 0.5, n)),
        "visits": rng.poisson(2, n).astype(float), "source": source, "plan": plan, "converted": y.astype(int),
    })


@pytest.fixture(scope="module")
def data():
    table = make_table(400, seed=0)
    schema = infer_schema(table, target="converted")
    X = prepare_features(table, schema)
    return schema, X, table["converted"]


@pytest.fixture(scope="module")
def rows(data):
    """Rows to explain: a string index in shuffled order, unseen and missing categories, missing numbers."""
    schema, _, _ = data
    rows = prepare_features(make_table(60, seed=1), schema)
    rows.iloc[:10, rows.columns.get_loc("source")] = "trade fair"
    rows.iloc[10:20, rows.columns.get_loc("plan")] = np.nan
    rows.iloc[20:30, rows.columns.get_loc("x [usd]")] = np.nan
    return rows.set_axis([f"lead{i}" for i in range(60)]).iloc[::-1]


@pytest.fixture(scope="module")
def fitted(data):
    schema, X, y = data
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LEADSCORE_THREADS", "1")
        return {case: make_model(name, schema, dict(params), seed=3).fit(X, y)
                for case, (name, params) in CASES.items()}


def served(model, X) -> np.ndarray:
    return model.predict_proba(X)[:, 1]


def assert_adds_up(model, X) -> Contributions:
    contrib = contributions(model, X)
    assert list(contrib.values.columns) == list(X.columns)
    assert contrib.values.index.equals(X.index) and contrib.base.shape == (len(X),)
    np.testing.assert_allclose(contrib.base + contrib.values.sum(axis=1).to_numpy(), served(model, X),
                               rtol=0, atol=TOL)
    return contrib


@pytest.mark.parametrize("case", CASES)
def test_single_member_contributions_add_up(case, fitted, rows):
    model = LeadModel({case: fitted[case]}, {case: 1.0})
    contrib = assert_adds_up(model, rows)
    assert np.ptp(contrib.base) < 1e-12  # one "no information" value for every row of one model
    assert contrib.values.abs().to_numpy().max() > 0.01  # the features do move the score


@pytest.mark.parametrize("case", CASES)
def test_member_explanation_reproduces_its_own_output(case, fitted, rows):
    margins = _member_margins(fitted[case], rows)
    total = margins.base + margins.values.sum(axis=1)
    output = total if margins.link is None else margins.link(total)
    atol = 1e-6 if case == "xgboost" else 1e-9  # XGBoost adds up in float32
    np.testing.assert_allclose(output, served(fitted[case], rows), rtol=0, atol=atol)


def test_lightgbm_margin_matches_predict_proba(fitted, rows):
    margins = _member_margins(fitted["lightgbm"], rows)
    assert margins.values.shape == (len(rows), 4) and margins.names[0] == "num__x [usd]"
    np.testing.assert_allclose(margins.base + margins.values.sum(axis=1),
                               logit(served(fitted["lightgbm"], rows)), rtol=0, atol=1e-9)


def test_probability_contributions_share_out_the_change_exactly():
    base = np.array([-1.0, 0.5, 2.0])
    values = np.array([[0.5, -0.2], [0.0, 0.0], [3.0, -3.0 + 1e-14]])
    margins = _member_margins.__globals__["_Margins"](base, values, ["a", "b"], {}, expit)
    p0, prob = _probability(margins)
    np.testing.assert_allclose(p0 + prob.sum(axis=1), expit(base + values.sum(axis=1)), atol=1e-15)
    assert np.all(np.sign(prob[0]) == np.sign(values[0])) and np.all(prob[1:] == 0)


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_calibrated_ensemble_adds_up(method, data, fitted, rows):
    _, X, y = data
    members = {name: fitted[name] for name in ("logistic", "lightgbm", "catboost")}
    weights = {"logistic": 0.3, "lightgbm": 0.5, "catboost": 0.2}
    raw = LeadModel(members, weights).raw_proba(X)
    model = LeadModel(members, weights, Calibrator(method).fit(raw, y))
    contrib = assert_adds_up(model, rows)
    raw_base = contributions(LeadModel(members, weights), rows).base
    np.testing.assert_allclose(contrib.base, model.calibrator.transform(raw_base), atol=1e-12)


def test_zero_weight_members_are_not_explained(fitted, rows):
    stub = KNeighborsClassifier(3).fit(rows[["visits"]].to_numpy(), np.arange(len(rows)) % 2)
    model = LeadModel({"xgboost": fitted["xgboost"], "knn": stub}, {"xgboost": 1.0, "knn": 0.0})
    contrib = contributions(model, rows)  # the stub would fail both to explain and to predict on X
    np.testing.assert_allclose(contrib.base + contrib.values.sum(axis=1),
                               served(fitted["xgboost"], rows), atol=TOL)
    with pytest.raises(UnsupportedModelError, match="got KNeighborsClassifier"):
        contributions(LeadModel({"knn": stub}, {"knn": 1.0}), rows)


def test_segmented_model_explains_each_row_with_its_own_model(data, fitted, rows):
    _, X, y = data
    referral = LeadModel({"lightgbm": fitted["lightgbm"]}, {"lightgbm": 1.0},
                         Calibrator("platt").fit(served(fitted["lightgbm"], X), y))
    event = LeadModel({"logistic": fitted["logistic"]}, {"logistic": 1.0})
    glob = LeadModel({"catboost": fitted["catboost"]}, {"catboost": 1.0})
    model = SegmentedModel("source", glob, {"referral": referral, "event": event})
    contrib = assert_adds_up(model, rows)
    for value, segment_model in (("referral", referral), ("event", event)):
        mask = (rows["source"] == value).to_numpy()
        assert mask.any()
        alone = contributions(segment_model, rows[mask])
        pd.testing.assert_frame_equal(contrib.values[mask], alone.values)
        np.testing.assert_array_equal(contrib.base[mask], alone.base)


def test_one_hot_levels_are_summed_back_to_their_field(fitted, rows):
    margins = _member_margins(fitted["logistic"], rows)
    source_columns = [i for i, name in enumerate(margins.names) if name.startswith("cat__source_")]
    assert len(source_columns) >= 3  # one column per kept level, plus the pooled rare levels
    assert any("infrequent" in margins.names[i] for i in source_columns)
    assert "num__missingindicator_x [usd]" in margins.names
    _, prob = _probability(margins)
    contrib = contributions(fitted["logistic"], rows)
    np.testing.assert_allclose(contrib.values["source"], prob[:, source_columns].sum(axis=1), atol=1e-12)
    indicator = [i for i, n in enumerate(margins.names) if n.endswith("x [usd]")]
    np.testing.assert_allclose(contrib.values["x [usd]"], prob[:, indicator].sum(axis=1), atol=1e-12)


def test_transformed_columns_map_to_the_longest_matching_feature():
    groups = {"num": ["x [usd]", "visits"], "cat": ["source", "source_detail"]}
    features = ["x [usd]", "visits", "source", "source_detail"]
    cases = {"num__x [usd]": "x [usd]", "num__missingindicator_visits": "visits", "cat__source": "source",
             "cat__source_referral": "source", "cat__source_infrequent_sklearn": "source",
             "cat__source_detail_web": "source_detail", "visits": "visits", "cat__region_north": None}
    for name, expected in cases.items():
        assert _source_feature(name, groups, features) == expected, name


@pytest.mark.parametrize("calibration", ["platt", "isotonic"])
def test_rule_scorer_contributions_land_on_rule_features(calibration, data, rows):
    _, X, y = data
    rules = (Rule("source", "==", "referral", 20), Rule("visits", ">=", 3, 5),
             Rule("x [usd]", "missing", points=-10), Rule("x [usd]", ">", 0.5, 15), Rule("absent", "present"))
    scorer = RuleScorer(rules, calibration=calibration).fit(X, y)
    contrib = assert_adds_up(LeadModel({"rules": scorer}, {"rules": 1.0}), rows)
    assert (contrib.values["plan"] == 0).all()
    hit = (rows["source"] == "referral").to_numpy()
    if calibration == "platt":  # then every rule that fires moves the probability its way
        assert (contrib.values["source"][hit] > 0).all() and (contrib.values["source"][~hit] == 0).all()


def test_contributions_reject_other_inputs(fitted, rows):
    with pytest.raises(DataValidationError, match="expected a DataFrame of prepared features, got ndarray"):
        contributions(fitted["lightgbm"], rows.to_numpy())
    empty = contributions(fitted["lightgbm"], rows.iloc[:0])
    assert empty.values.shape == (0, 4) and empty.base.shape == (0,)


def hand_made() -> tuple[Contributions, pd.DataFrame]:
    X = pd.DataFrame({"email_opens_7d": [5.0, 0.0], "quote_requests": [1.0, 0.0],
                      "source": ["referral", None], "budget": [25000.0, np.nan], "has_phone": [1.0, 0.0]},
                     index=["a", "b"])
    values = pd.DataFrame({"email_opens_7d": [0.12, -0.01], "quote_requests": [0.2, -0.004],
                           "source": [0.09, -0.03], "budget": [-0.06, 0.0], "has_phone": [0.004, -0.05]},
                          index=X.index)
    return Contributions(np.array([0.1, 0.3]), values), X


def test_top_reasons_are_sorted_signed_capped_and_never_zero():
    contrib, X = hand_made()
    first, second = top_reasons(contrib, X, k=2)
    assert [r.field for r in first["positive"]] == ["quote_requests", "email_opens_7d"]  # +20, +12; +9 cut
    assert first["negative"] == [Reason("budget", -6, "Budget $25,000 (-6)")]  # has_phone +0.4 never shown
    assert first["positive"][1].text == "Opened 5 e-mails in the last 7 days (+12)"
    assert [(r.field, r.points) for r in second["negative"]] == [("has_phone", -5), ("source", -3)]
    assert second["positive"] == [] and second["negative"][0].text == "No phone number (-5)"
    everything = top_reasons(contrib, X, k=10)[1]["negative"]
    assert [r.points for r in everything] == [-5, -3, -1]  # quote_requests -0.4 rounds to 0: hidden
    assert top_reasons(contrib, X, k=0) == [{"positive": [], "negative": []}] * 2
    np.testing.assert_allclose(score_points(contrib).to_numpy(), 100 * contrib.values.to_numpy())


def test_top_reasons_reject_other_rows():
    contrib, X = hand_made()
    with pytest.raises(DataValidationError, match="same index"):
        top_reasons(contrib, X.reset_index(drop=True))
    with pytest.raises(DataValidationError, match="expected an integer >= 0"):
        top_reasons(contrib, X, k=-1)


@pytest.mark.parametrize(("field", "value", "text"), [
    ("email_opens_7d", 1.0, "Opened 1 e-mail in the last 7 days"),
    ("quote_requests", 3.0, "Requested 3 quotes"),
    ("quote_requests", 0.0, "No quote requested"),
    ("meetings", 2.0, "Took 2 meetings"),
    ("pricing_page_views", 1.0, "Viewed pricing 1 time"),
    ("first_response_hours", 2.6, "First contacted 3 h after sign-up"),
    ("first_response_hours", np.nan, "Not contacted yet"),
    ("days_since_last_activity", 4.0, "Last activity 4 days ago"),
    ("email_domain_type", "free", "Free e-mail domain"),
    ("seniority", "vp", "Seniority: VP"),
    ("seniority", "c_level", "Seniority: C-level"),
    ("source", "referral", "Lead source: referral"),
    ("source", "paid_search", "Lead source: paid search"),
    ("budget", 25000.0, "Budget $25,000"),
    ("budget", None, "Budget not given"),
    ("note_competitor", 1.0, "Call notes mention a competitor"),
    ("note_competitor", 0.0, "Call notes: no mention of a competitor"),
    ("has_phone", 0.0, "No phone number"),
    ("has_phone", 1.0, "Phone number given"),
    ("created_month", 3.0, "Created in March"),
    ("x [usd]", 12.5, "X [usd]: 12.5"),
    ("annual_revenue", 1234567.0, "Annual revenue: 1,234,567"),
    ("industry", "real_estate", "Industry: real estate"),
    ("industry", np.nan, "Industry not given"),
    ("website__present", 0.0, "Website not given"),
    ("email__free_domain", 1.0, "Email: free e-mail domain"),
    ("quote_requests", "many", "Quote requests: many"),  # a value the template cannot take
])
def test_describe_reads_plainly(field, value, text):
    assert describe(field, value) == text


def test_feature_text_covers_the_demo_snapshot():
    from leadscore.data.snapshot import NOTE_KEYWORDS

    assert {f"note_{key}" for key in NOTE_KEYWORDS} <= set(FEATURE_TEXT)
    for field in FEATURE_TEXT:  # every template takes numbers, levels and gaps
        for value in (0.0, 1.0, 2.0, 1234.5, "some_level", np.nan):
            text = describe(field, value)
            assert not text[:1].islower() and not re.search(r"[{}_]|\(s\)|\bnan\b", text), text
    assert describe("vertical", 2.0) == "Vertical: 2"
    assert describe("contact_completeness", 0.5) == "Profile 50% complete"
