from __future__ import annotations

import warnings

import joblib
import numpy as np
import optuna
import pandas as pd
import pytest
from imblearn.pipeline import Pipeline as ImbPipeline
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline

from leadscore.core.exceptions import ConfigError
from leadscore.data.schema import infer_schema, prepare_features
from leadscore.modeling.candidates import (
    CANDIDATES,
    DEFAULT_PARAMS,
    SEARCH_SPACES,
    make_model,
    search_defaults,
    suggest_params,
)
from leadscore.modeling.catboost_model import MISSING_CATEGORY

CASES = {**{name: (name, {}) for name in sorted(CANDIDATES)}, "logistic+smote": ("logistic", {"smote": True})}


def make_table(n: int = 600, seed: int = 0) -> pd.DataFrame:
    """Leads whose conversion depends on an awkwardly named number with gaps and on the source."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    source = rng.choice(["Web", "referral", "Event"], n, p=[0.5, 0.2, 0.3])
    logit = -1.6 + 1.5 * signal + 1.2 * (source == "referral")
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame({
        "score[x]": np.where(rng.random(n) < 0.2, np.nan, signal + rng.normal(0, 0.5, n)),
        "a<b": rng.normal(size=n),
        "source": source,
        "region": rng.choice(["North", "South", None], n),
        "converted": y,
    })


@pytest.fixture(scope="module")
def data():
    table = make_table()
    schema = infer_schema(table, target="converted")
    return schema, prepare_features(table, schema), table["converted"]


@pytest.fixture(scope="module")
def scoring_rows(data):
    """Rows with an unseen category, missing categories and missing numbers."""
    _, X, _ = data
    rows = X.iloc[:30].copy()
    rows.iloc[:10, rows.columns.get_loc("source")] = "trade fair"
    rows.iloc[10:20, rows.columns.get_loc("source")] = np.nan
    rows.iloc[20:, rows.columns.get_loc("score[x]")] = np.nan
    return rows


@pytest.fixture(scope="module")
def fitted(data):
    """Every candidate fitted once, single-threaded: OpenMP threads that spin-wait make 2-thread fits
    of tiny data take up to a minute when other processes keep the cores busy."""
    schema, X, y = data
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LEADSCORE_THREADS", "1")
        return {case: make_model(name, schema, params, seed=3).fit(X, y)
                for case, (name, params) in CASES.items()}


@pytest.mark.parametrize("case", CASES)
def test_candidate_scores_unseen_and_missing_values(case, data, fitted, scoring_rows):
    _, X, y = data
    proba = fitted[case].predict_proba(scoring_rows)
    assert proba.shape == (len(scoring_rows), 2)
    assert np.all((proba >= 0) & (proba <= 1)) and np.allclose(proba.sum(axis=1), 1)
    assert roc_auc_score(y, fitted[case].predict_proba(X)[:, 1]) > 0.7


@pytest.mark.parametrize("case", CASES)
def test_candidate_survives_clone_and_joblib(case, data, fitted, scoring_rows, tmp_path):
    _, X, y = data
    expected = fitted[case].predict_proba(scoring_rows)[:, 1]
    refit = clone(fitted[case]).fit(X, y)
    np.testing.assert_allclose(refit.predict_proba(scoring_rows)[:, 1], expected, atol=1e-6)
    joblib.dump(fitted[case], tmp_path / "model.joblib")
    loaded = joblib.load(tmp_path / "model.joblib")
    np.testing.assert_allclose(loaded.predict_proba(scoring_rows)[:, 1], expected)
    assert {"prep", "model"} <= set(loaded.named_steps)


def test_smote_resamples_training_rows_only(data, fitted):
    _, X, y = data
    pipe = fitted["logistic+smote"]
    assert isinstance(pipe, ImbPipeline) and list(pipe.named_steps) == ["prep", "smote", "model"]
    assert pipe.named_steps["smote"].sampling_strategy_ == {1: int((y == 0).sum() - (y == 1).sum())}
    assert pipe.predict_proba(X.iloc[:7]).shape == (7, 2)
    assert "smote" not in pipe.named_steps["model"].get_params()
    plain = fitted["logistic"]
    assert type(plain) is Pipeline and "smote" not in plain.named_steps


def test_catboost_gets_categories_as_text_by_position(data, fitted, scoring_rows):
    schema, _, _ = data
    pipe = fitted["catboost"]
    cat_positions = list(range(len(schema.numeric_features), len(schema.feature_names)))
    assert pipe.named_steps["model"].get_cat_feature_indices() == cat_positions
    prepared = pipe.named_steps["prep"].transform(scoring_rows)
    assert (prepared["cat__source"].iloc[10:20] == MISSING_CATEGORY).all()
    assert prepared["cat__source"].iloc[0] == "trade fair"


def test_defaults_and_overrides_reach_the_estimator(data):
    schema, _, _ = data
    lgbm = make_model("lightgbm", schema).named_steps["model"].get_params()
    assert {k: lgbm[k] for k in DEFAULT_PARAMS["lightgbm"]} == DEFAULT_PARAMS["lightgbm"]
    assert make_model("logistic", schema).named_steps["model"].get_params()["C"] == 0.5
    xgb = make_model("xgboost", schema, {"max_depth": 3}, seed=7).named_steps["model"]
    assert (xgb.max_depth, xgb.random_state, xgb.n_estimators) == (3, 7, 400)
    cat = make_model("catboost", schema, {"depth": 4}, seed=7).named_steps["model"].get_params()
    assert (cat["depth"], cat["random_seed"]) == (4, 7)


def test_thread_counts_come_from_the_machine_at_build_time(data, monkeypatch):
    schema, _, _ = data
    monkeypatch.setenv("LEADSCORE_THREADS", "3")
    built = {name: make_model(name, schema).named_steps["model"].get_params()
             for name in ("lightgbm", "xgboost", "random_forest", "catboost")}
    assert [p.get("n_jobs", p.get("thread_count")) for p in built.values()] == [3, 3, 3, 3]


def test_unknown_model_is_a_config_error(data):
    with pytest.raises(ConfigError, match="expected one of .*catboost"):
        make_model("svm", data[0])
    with pytest.raises(ConfigError, match="no search space"):
        suggest_params("svm", optuna.trial.FixedTrial({}))


@pytest.mark.parametrize("name", sorted(CANDIDATES))
def test_search_space_contains_defaults_and_builds_models(name, data):
    assert set(SEARCH_SPACES) == set(CANDIDATES)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # optuna warns when a fixed value lies outside the space
        assert suggest_params(name, optuna.trial.FixedTrial(search_defaults(name))) == search_defaults(name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(5):
        params = suggest_params(name, study.ask())
        model_params = make_model(name, data[0], params).named_steps["model"].get_params()
        assert {k: model_params[k] for k in params} == params
