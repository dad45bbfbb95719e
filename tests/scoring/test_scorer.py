"""The score of a lead: every field, confidence as documented, reasons that add up, single == batch."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from conftest import make_flat_leads
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.dummy import DummyClassifier

from leadscore.artifacts.registry import Registry
from leadscore.core.exceptions import DataValidationError, ModelNotFoundError
from leadscore.modeling.ensemble import LeadModel
from leadscore.scoring.explain import contributions
from leadscore.scoring.scorer import OUTPUT_COLUMNS, Scorer, _member_outputs, support
from leadscore.training.fit import fit_table

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture(scope="module")
def scorer() -> Scorer:
    result = fit_table(make_flat_leads(600, seed=1), target="converted", id_column="lead_id",
                       time_column="created", candidates=["logistic", "lightgbm"])
    assert isinstance(result.bundle.model, LeadModel)  # an ensemble: agreement is exercised
    return Scorer(result.bundle, "20260101000000")


@pytest.fixture(scope="module")
def leads() -> pd.DataFrame:
    return make_flat_leads(300, seed=7).drop(columns=["converted"])


def test_every_field_is_there_and_consistent(scorer, leads):
    out = scorer.score_frame(leads, reasons=3, now=NOW)
    assert list(out.columns) == list(OUTPUT_COLUMNS)
    assert out["lead_id"].tolist() == leads["lead_id"].tolist()
    prob = scorer.bundle.model.predict_proba(scorer.features(leads))[:, 1]
    np.testing.assert_allclose(out["probability"], prob, atol=5e-7)
    assert (out["score"] == np.rint(out["probability"] * 100)).all()
    assert out["confidence"].between(0, 1).all() and out["confidence"].std() > 0
    assert (out["model_version"] == "20260101000000").all()
    assert (out["scored_at"] == pd.Timestamp(NOW)).all()
    high = out["probability"] >= 0.7
    assert (out.loc[high, "tier"] == "HIGH_PRIORITY").all()


def test_reasons_are_the_largest_contributions_in_points(scorer, leads):
    out = scorer.score_frame(leads, reasons=2, now=NOW)
    X = scorer.features(leads)  # noqa: N806
    contrib = contributions(scorer.bundle.model, X)
    np.testing.assert_allclose(contrib.base + contrib.values.sum(axis=1), out["probability"], atol=1e-6)
    for i in range(0, len(leads), 37):
        reasons = json.loads(out["reasons"].iloc[i])
        points = np.rint(100 * contrib.values.iloc[i])
        ups = points[points > 0].sort_values(ascending=False)
        assert [r["points"] for r in reasons["positive"]] == ups.head(2).astype(int).tolist()
        assert all(r["points"] < 0 for r in reasons["negative"]) and len(reasons["negative"]) <= 2
        for r in reasons["positive"] + reasons["negative"]:
            assert r["text"].endswith(f"({r['points']:+d})") and r["field"] in X.columns


def test_no_reasons_skips_the_work_but_not_the_score(scorer, leads):
    with_reasons = scorer.score_frame(leads, reasons=3, now=NOW)
    without = scorer.score_frame(leads, reasons=0, now=NOW)
    pd.testing.assert_frame_equal(with_reasons.drop(columns="reasons"), without.drop(columns="reasons"))
    assert set(without["reasons"]) == {'{"positive": [], "negative": []}'}
    with pytest.raises(DataValidationError, match="reasons"):
        scorer.score_frame(leads, reasons=-1)


def test_single_lead_equals_its_batch_row(scorer, leads):
    batch = scorer.score_frame(leads, now=NOW)
    for i in (0, 11, 150, 299):
        one = scorer.score_lead(leads.iloc[i].to_dict(), now=NOW)
        row = batch.iloc[i]
        assert one["lead_id"] == row["lead_id"]
        assert one["probability"] == row["probability"] and one["score"] == row["score"]
        assert one["confidence"] == row["confidence"] and one["tier"] == row["tier"]
        assert one["reasons"] == json.loads(row["reasons"])


def test_single_lead_with_absent_optional_fields(scorer, leads):
    lead = {"lead_id": "X1", "created": "2024-03-01 10:00", "email": "a@acme.com"}
    out = scorer.score_lead(lead)
    assert 0 <= out["probability"] <= 1 and out["lead_id"] == "X1"
    full = scorer.score_lead(leads.iloc[0].to_dict())
    assert out["confidence"] < full["confidence"]  # less of the usual data: less support


def _constant(p: int) -> DummyClassifier:
    return DummyClassifier(strategy="constant", constant=p).fit(np.zeros((2, 1)), [0, 1])


def test_agreement_is_one_for_identical_members_and_zero_at_the_widest_split():
    X = pd.DataFrame({"x": np.zeros(4)})  # noqa: N806
    same = LeadModel({"a": _constant(1), "b": _constant(1)}, {"a": 0.5, "b": 0.5})
    split = LeadModel({"a": _constant(1), "b": _constant(0)}, {"a": 0.7, "b": 0.3})
    assert _member_outputs(same, X)[1].tolist() == [1.0] * 4
    prob, agreement = _member_outputs(split, X)
    np.testing.assert_allclose(prob, 0.7)
    np.testing.assert_allclose(agreement, 0.0, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=2, max_size=4), st.data())
def test_agreement_matches_its_definition(probs, data):
    weights = np.array(data.draw(st.lists(st.floats(0.05, 1), min_size=len(probs), max_size=len(probs))))
    weights = weights / weights.sum()

    class Fixed:
        def __init__(self, p):
            self.p = p

        def predict_proba(self, X):  # noqa: N803
            return np.column_stack([np.full(len(X), 1 - self.p), np.full(len(X), self.p)])

    names = [f"m{i}" for i in range(len(probs))]
    model = LeadModel({n: Fixed(p) for n, p in zip(names, probs, strict=True)},
                      dict(zip(names, weights.tolist(), strict=True)))
    _, agreement = _member_outputs(model, pd.DataFrame({"x": [0.0]}))
    m = float(np.clip(np.dot(weights, probs), 0, 1))
    s = np.sqrt(np.dot(weights, (np.array(probs) - m) ** 2))
    expected = 1.0 if m * (1 - m) <= 1e-24 else 1 - s / np.sqrt(m * (1 - m))
    assert 0.0 <= agreement[0] <= 1.0
    assert agreement[0] == pytest.approx(np.clip(expected, 0, 1), abs=1e-9)


def test_support_counts_usually_filled_fields(scorer, leads):
    X = scorer.features(leads.head(3))  # noqa: N806
    usual = [c for c in scorer.schema.columns if c.missing_rate < 0.5]
    assert support(X, scorer.schema).max() <= 1.0
    blank = X.copy()
    for spec in usual:
        for name in spec.feature_names():
            blank[name] = 0.0 if spec.kind == "presence" else np.nan
    assert support(blank, scorer.schema).tolist() == [0.0, 0.0, 0.0]


def test_load_from_registry_and_folder(scorer, tmp_path):
    from leadscore.artifacts.bundle import save_bundle

    folder = save_bundle(scorer.bundle, tmp_path / "model")
    assert Scorer.load(folder).version == "dir:model"
    reg = Registry(tmp_path / "reg")
    with pytest.raises(ModelNotFoundError, match="no active model"):
        Scorer.load(registry=reg.root)
    version = reg.register(folder, activate=True)
    assert Scorer.load(registry=reg.root).version == version
    assert Scorer.load(version, registry=reg.root).version == version
    with pytest.raises(ModelNotFoundError):
        Scorer.load("nonsense", registry=reg.root)
