"""The compiled fast path gives what the general path gives: probabilities, contributions, reasons,
confidence; single leads equal their batch rows; unsupported models fall back; a Scorer still pickles."""

from __future__ import annotations

import json
import logging
import pickle
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from conftest import make_flat_leads
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadscore.artifacts.bundle import ModelBundle
from leadscore.data.schema import prepare_features, prepare_lead
from leadscore.modeling.candidates import make_model
from leadscore.modeling.ensemble import LeadModel
from leadscore.modeling.segments import SegmentedModel
from leadscore.scoring.explain import contributions
from leadscore.scoring.fastpath import compile_model
from leadscore.scoring.fastpath import kernels as fast_kernels
from leadscore.scoring.fastpath.linear import LinearMember
from leadscore.scoring.scorer import Scorer, _member_outputs
from leadscore.training.fit import fit_table

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
KINDS = ("logistic", "lightgbm", "xgboost", "catboost")
TOL = 1e-9


@pytest.fixture(scope="module")
def fitted() -> dict[str, ModelBundle]:
    """One small real model per candidate kind (fit_table on the messy flat export), and an ensemble of
    them with the lightgbm fit's Platt calibrator."""
    frame = make_flat_leads(300, seed=1)
    bundles = {kind: fit_table(frame, target="converted", id_column="lead_id", time_column="created",
                               candidates=[kind], refit=False).bundle for kind in KINDS}
    members = {kind: next(iter(bundles[kind].model.members.values())) for kind in KINDS}
    ensemble = LeadModel(members, {"logistic": 0.4, "lightgbm": 0.3, "catboost": 0.2, "xgboost": 0.1},
                         bundles["lightgbm"].model.calibrator)
    schema, metadata = bundles["lightgbm"].schema, dict(bundles["lightgbm"].metadata)
    bundles["ensemble"] = ModelBundle(ensemble, schema, metadata)
    return bundles


@pytest.fixture(scope="module")
def leads() -> pd.DataFrame:
    """Rows with unseen categories, missing values, placeholders and text in a number column."""
    rows = make_flat_leads(60, seed=7).drop(columns=["converted"])
    rows.loc[:9, "source"] = "Trade Fair"  # unseen
    rows.loc[10:19, "region"] = None
    rows.loc[20:29, "budget"] = "Select"  # placeholder
    rows.loc[30:34, "budget"] = "about 5k"  # not a number
    rows.loc[35:39, "email"] = "no address"
    return rows


COMPILED: dict[int, tuple[ModelBundle, object]] = {}  # compiled once per bundle for the whole module


def scorers(bundle: ModelBundle) -> tuple[Scorer, Scorer]:
    """(fast, general) scorers of ``bundle``; the fast one reuses the bundle's compiled model."""
    fast = Scorer(bundle, "v1")
    if id(bundle) not in COMPILED or COMPILED[id(bundle)][0] is not bundle:
        COMPILED[id(bundle)] = (bundle, fast.compiled())  # the bundle is kept: its id stays its own
    fast._compiled = COMPILED[id(bundle)][1]
    return fast, Scorer(bundle, "v1", fast_path=False)


@pytest.mark.parametrize("kind", [*KINDS, "ensemble"])
def test_compiled_equals_general(kind, fitted, leads):
    fast, general = scorers(fitted[kind])
    assert fast.compiled(None) is not None, f"{kind} should compile"
    X = prepare_features(leads, fast.schema)  # noqa: N806
    columns = {c: X[c].to_numpy() for c in X.columns}
    scores = fast.compiled().score(columns, explain=True)
    prob, agreement = _member_outputs(fitted[kind].model, X)
    np.testing.assert_allclose(scores.probability, prob, rtol=0, atol=TOL)
    np.testing.assert_allclose(scores.agreement, agreement, rtol=0, atol=TOL)
    contrib = contributions(fitted[kind].model, X)
    np.testing.assert_allclose(scores.base, contrib.base, rtol=0, atol=TOL)
    np.testing.assert_allclose(scores.values, contrib.values.to_numpy(), rtol=0, atol=TOL)
    np.testing.assert_allclose(scores.base + scores.values.sum(axis=1), prob, rtol=0, atol=1e-6)
    for reasons in (0, 3):
        pd.testing.assert_frame_equal(fast.score_frame(leads, reasons=reasons, now=NOW),
                                      general.score_frame(leads, reasons=reasons, now=NOW))


@pytest.mark.parametrize("kind", ["lightgbm", "catboost", "ensemble"])
def test_single_lead_equals_batch_row_and_general_path(kind, fitted, leads):
    fast, general = scorers(fitted[kind])
    batch = fast.score_frame(leads, reasons=3, now=NOW)
    for i in (0, 12, 25, 31, 37, 50):
        lead = leads.iloc[i].to_dict()
        one = fast.score_lead(lead, now=NOW)
        assert one == general.score_lead(lead, now=NOW)
        row = batch.iloc[i]
        assert one["probability"] == row["probability"] and one["confidence"] == row["confidence"]
        assert one["reasons"] == json.loads(row["reasons"]) and one["lead_id"] == row["lead_id"]


def test_absent_optional_columns_and_renamed_headers(fitted, leads):
    fast, general = scorers(fitted["ensemble"])
    partial = leads.drop(columns=["budget", "region"]).rename(columns={"source": "Source "})
    pd.testing.assert_frame_equal(fast.score_frame(partial, now=NOW), general.score_frame(partial, now=NOW))
    lead = {"lead_id": "X1", "created": "2024-03-01 10:00", "email": "a@acme.com", " SOURCE": "referral"}
    assert fast.score_lead(lead, now=NOW) == general.score_lead(lead, now=NOW)
    no_id = {k: v for k, v in lead.items() if k != "lead_id"}
    assert fast.score_lead(no_id, now=NOW) == general.score_lead(no_id, now=NOW)


def test_a_mismatch_falls_back_to_the_general_path(fitted, leads, monkeypatch, caplog):
    run = LinearMember.run

    def off_by_a_little(self, batch, explain):
        out = run(self, batch, explain)
        return type(out)(out.proba + 1e-7, out.p0, out.values)

    monkeypatch.setattr(LinearMember, "run", off_by_a_little)
    fast, general = Scorer(fitted["ensemble"], "v1"), Scorer(fitted["ensemble"], "v1", fast_path=False)
    with caplog.at_level(logging.INFO, logger="leadscore.scoring.fastpath.compiled"):
        assert fast.compiled() is None
    assert "logistic probability" in caplog.text
    pd.testing.assert_frame_equal(fast.score_frame(leads, now=NOW), general.score_frame(leads, now=NOW))


def test_unsupported_models_fall_back(fitted, leads):
    schema = fitted["lightgbm"].schema
    X = prepare_features(make_flat_leads(300, seed=1), schema)  # noqa: N806
    y = make_flat_leads(300, seed=1)["converted"].eq("Yes").astype(int)
    forest = make_model("random_forest", schema, {"n_estimators": 20}).fit(X, y)
    forest = LeadModel({"rf": forest}, {"rf": 1.0})
    segmented = SegmentedModel("source", fitted["ensemble"].model,
                               {"referral": fitted["lightgbm"].model})
    for model, reasons in ((forest, 0), (segmented, 3)):  # 0: forests are explained by shap, slow to import
        assert compile_model(model, schema) is None
        bundle = ModelBundle(model, schema, dict(fitted["lightgbm"].metadata))
        fast, general = scorers(bundle)
        rows = leads.head(20)
        pd.testing.assert_frame_equal(fast.score_frame(rows, reasons=reasons, now=NOW),
                                      general.score_frame(rows, reasons=reasons, now=NOW))
        lead = leads.iloc[3].to_dict()
        one = fast.score_lead(lead, reasons=reasons, now=NOW)
        assert one == general.score_lead(lead, reasons=reasons, now=NOW)


def test_smote_pipelines_and_bare_pipelines_compile(fitted, leads):
    schema, frame = fitted["logistic"].schema, make_flat_leads(300, seed=1)
    X, y = prepare_features(frame, schema), frame["converted"].eq("Yes").astype(int)  # noqa: N806
    smote = make_model("logistic", schema, {"smote": True}).fit(X, y)
    bare = next(iter(fitted["lightgbm"].model.members.values()))  # a Pipeline, not a LeadModel
    for model in (LeadModel({"smote": smote}, {"smote": 1.0}), bare):
        fast, general = scorers(ModelBundle(model, schema, dict(fitted["logistic"].metadata)))
        assert fast.compiled() is not None
        pd.testing.assert_frame_equal(fast.score_frame(leads, now=NOW), general.score_frame(leads, now=NOW))


def test_wide_lightgbm_trees_are_walked_and_explained_by_lightgbm(fitted, leads):
    schema, frame = fitted["lightgbm"].schema, make_flat_leads(1000, seed=1)
    X, y = prepare_features(frame, schema), frame["converted"].eq("Yes").astype(int)  # noqa: N806
    wide = make_model("lightgbm", schema, {"num_leaves": 120, "min_child_samples": 1, "n_estimators": 5,
                                           "min_child_weight": 0.0, "subsample": 1.0}).fit(X, y)
    assert max(t["num_leaves"] for t in wide[-1].booster_.dump_model()["tree_info"]) > 64
    fast, general = scorers(ModelBundle(LeadModel({"wide": wide}, {"wide": 1.0}), schema,
                                        dict(fitted["lightgbm"].metadata)))
    assert fast.compiled() is not None and not fast.compiled().members[0].binned
    pd.testing.assert_frame_equal(fast.score_frame(leads, now=NOW), general.score_frame(leads, now=NOW))


def test_scorer_pickles_without_its_compiled_model(fitted, leads):
    fast, _ = scorers(fitted["lightgbm"])
    before = fast.score_frame(leads, now=NOW)
    assert fast.compiled() is not None
    copy = pickle.loads(pickle.dumps(fast))
    assert copy._compiled is not fast._compiled
    pd.testing.assert_frame_equal(copy.score_frame(leads, now=NOW), before)


def test_quantile_kernel_matches_numpy_interp_both_ways():
    rng = np.random.default_rng(0)
    quantiles = np.column_stack([
        np.sort(rng.normal(size=40)),
        np.sort(np.concatenate([np.zeros(25), np.ones(15)])),  # a 0/1 feature: long runs of equal values
        np.sort(np.round(rng.exponential(3, 40))),  # counts: some repeats
    ])
    references = np.linspace(0, 1, 40)
    x = np.concatenate([rng.normal(size=(300, 3)) * 3, quantiles, quantiles + 1e-12, [[np.nan] * 3]])
    got = fast_kernels.quantile_uniform(x, quantiles, references, np.ascontiguousarray(-quantiles[::-1]),
                                        np.ascontiguousarray(-references[::-1]))
    for c in range(3):  # sklearn's QuantileTransformer._transform_col, forward, before the ppf
        q, col = quantiles[:, c], x[:, c]
        want = 0.5 * (np.interp(col, q, references) - np.interp(-col, -q[::-1], -references[::-1]))
        want[col + 1e-7 > q[-1]] = 1.0
        want[col - 1e-7 < q[0]] = 0.0
        np.testing.assert_array_equal(got[:, c], want)


NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64), st.integers(-10**6, 10**6),
                    st.sampled_from(["$1,200", "12%", "3,5", "N/A", "", "Select", "abc", "1e3"]), st.none())
TEXT = st.one_of(st.sampled_from(["Web Form", " referral ", "PAID SEARCH", "Select", "", "fax", "West",
                                  "east", "unknown"]), st.text(max_size=6), st.none(), st.floats(width=64))
DATES = st.one_of(st.sampled_from(["2024-03-01 10:00", "2024-02-30", "n/a", "2023-12-31T23:59:59+05:00"]),
                  st.datetimes(timezones=st.none()), st.none(), st.integers(0, 10**12))
EMAILS = st.one_of(st.sampled_from(["a@gmail.com", "b@acme.com", "nope", "x@YAHOO.COM "]), st.none())


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.fixed_dictionaries({"lead_id": st.text(min_size=1, max_size=5), "created": DATES,
                              "source": TEXT, "budget": NUMBERS, "email": EMAILS, "region": TEXT}),
       st.sets(st.sampled_from(["budget", "region", "source"])))
def test_any_lead_scores_as_the_general_path_does(fitted, lead, dropped):
    for name in dropped:
        lead.pop(name)
    fast, general = scorers(fitted["ensemble"])
    expected = prepare_features(pd.DataFrame([lead]), fast.schema)
    for name, values in prepare_lead(lead, fast.schema).items():
        want = expected[name].to_numpy()
        assert values.dtype == want.dtype, name
        present = ~pd.isna(want)
        assert (pd.isna(values) == ~present).all() and (values[present] == want[present]).all()
    assert outcome(fast, lead) == outcome(general, lead)


def outcome(scorer: Scorer, lead: dict) -> object:
    """The scored lead, or the type of error scoring it raised (a float32 model rejects 1e300 either way)."""
    try:
        return scorer.score_lead(lead, now=NOW)
    except Exception as exc:  # the two paths must fail alike too
        return type(exc)
