"""Model selection, segments, clusters and the champion on small generated data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import make_flat_leads

from leadscore.core.config import DecisionParams
from leadscore.core.exceptions import ConfigError
from leadscore.data.schema import infer_schema, prepare_features
from leadscore.evaluation.metrics import better
from leadscore.modeling.composite import refit as refit_scorer
from leadscore.modeling.rules import Rule
from leadscore.modeling.segments import SegmentedModel
from leadscore.training.build import build_model
from leadscore.training.clusters import lead_clusters
from leadscore.training.selection import SelectionSettings, _budgets, make_folds, select_model


@pytest.fixture(scope="module")
def table():
    leads = make_flat_leads(900, seed=11)
    y = (leads.pop("converted") == "Yes").astype(int)
    schema = infer_schema(leads, id_column="lead_id")
    return prepare_features(leads, schema), y, schema, pd.to_datetime(leads["created"])


def test_expanding_folds_never_look_ahead(table):
    X, y, schema, times = table
    folds = make_folds(y, times, 4, seed=0)
    assert len(folds) == 4
    for train, valid in folds:
        assert times.iloc[train].max() <= times.iloc[valid].min()
    first_block = set(range(len(y))) - set(np.concatenate([v for _, v in folds]))
    assert first_block  # the oldest block is never predicted out of fold


def test_select_model_oof_table_and_champion(table):
    X, y, schema, times = table
    rules = (Rule("source", "==", "referral", 10.0, "Referral"),)
    settings = SelectionSettings(candidates=("rules", "logistic", "lightgbm"), rules=rules, cv_folds=3)
    result = select_model(X, y, schema, settings, times=times)
    assert set(result.table.index) >= {"rules", "logistic", "lightgbm"}
    oof = result.candidates["logistic"].oof
    assert np.isnan(oof).sum() == (~result.covered).sum() > 0
    best_single = max(("logistic", "lightgbm"), key=lambda n: result.candidates[n].metrics["roc_auc"])
    if result.champion == "ensemble":
        assert result.table.loc["ensemble", "roc_auc"] > result.table.loc[best_single, "roc_auc"]
        assert abs(sum(result.weights.values()) - 1) < 1e-6 and len(result.weights) > 1
    else:
        assert result.champion == best_single and result.weights == {best_single: 1.0}
    assert "rules" not in result.weights  # the baseline is compared, never blended
    prob = result.model.predict_proba(X)[:, 1]
    assert prob.shape == (len(X),) and np.all((prob > 0) & (prob < 1))


def test_metric_direction_and_budget_shares():
    assert better("roc_auc", 0.8, 0.7) and better("log_loss", 0.2, 0.3)
    shares = _budgets(["rules", "logistic", "catboost"], SelectionSettings(time_budget=100.0))
    assert shares["rules"] is None and shares["catboost"] == pytest.approx(4 * shares["logistic"])
    assert shares["logistic"] + shares["catboost"] == pytest.approx(100.0)


def test_unknown_candidate_is_a_config_error(table):
    X, y, schema, times = table
    with pytest.raises(ConfigError, match="unknown candidate"):
        select_model(X, y, schema, SelectionSettings(candidates=("logistic", "svm")))


def two_segment_data(n=3000, seed=3):
    rng = np.random.default_rng(seed)
    segment = rng.choice(["north", "south", "tiny"], n, p=[0.48, 0.48, 0.04])
    x = rng.normal(size=n)
    effect = np.where(segment == "north", 2.0, -2.0)      # opposite effects: a global model averages them out
    y = (rng.random(n) < 1 / (1 + np.exp(-(effect * x - 1)))).astype(int)
    frame = pd.DataFrame({"segment": segment, "x": x, "noise": rng.normal(size=n)})
    return frame, pd.Series(y)


def test_segments_get_their_own_model_where_it_wins():
    frame, y = two_segment_data()
    schema = infer_schema(frame)
    X = prepare_features(frame, schema)
    settings = SelectionSettings(candidates=("logistic",), cv_folds=3, ensemble=False)
    champion = build_model(X, y, schema, settings, segment_column="segment", min_positives=40,
                              decision=DecisionParams(objective="f1", capacity_share=None,
                                                      target_precision=None))
    table = champion.segments.table.set_index("segment")
    assert table.loc["north", "choice"] == "segment" and table.loc["south", "choice"] == "segment"
    assert table.loc["tiny", "choice"] == "global" and "positives" in table.loc["tiny", "reason"]
    assert isinstance(champion.scorer, SegmentedModel)
    north = X[X["segment"] == "north"].head(5)
    routed = champion.scorer.predict_proba(north)[:, 1]
    direct = champion.scorer.model_for("north").predict_proba(north)[:, 1]
    np.testing.assert_allclose(routed, direct)
    refitted = refit_scorer(champion.scorer, X, y)
    assert set(refitted.segment_models) == {"north", "south"}
    assert champion.threshold.objective == "f1" and 0 < champion.threshold.threshold < 1


def test_clusters_profile(table):
    X, y, schema, _ = table
    clusters = lead_clusters(X, y, schema, k=4, seed=0)
    assert len(clusters.profile) == 4 and clusters.profile["share"].sum() == pytest.approx(1, abs=1e-3)
    assert clusters.profile["leads"].sum() == len(X)
    assert clusters.profile["defining_traits"].str.len().min() > 0


def test_capacity_per_day_threshold(table):
    X, y, schema, times = table
    settings = SelectionSettings(candidates=("logistic",), cv_folds=3, ensemble=False)
    decision = DecisionParams(objective="capacity", capacity_share=None, capacity_per_day=1.0)
    champion = build_model(X, y, schema, settings, times=times, decision=decision)
    # leads arrive 4 a day (every 6 hours), so 1 a day is the top quarter
    assert champion.threshold.share_flagged == pytest.approx(0.25, abs=0.02)
    with pytest.raises(ConfigError, match="leads per day"):
        build_model(X, y, schema, settings, decision=decision)
