from __future__ import annotations

import numpy as np
import optuna
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from leadscore.core.exceptions import ConfigError, DataValidationError
from leadscore.data.schema import infer_schema, prepare_features
from leadscore.modeling import candidates as models
from leadscore.modeling.candidates import Param, make_model, search_defaults
from leadscore.training.tuning import tune


@pytest.fixture(autouse=True)
def single_thread(monkeypatch):
    """OpenMP threads that spin-wait make 2-thread fits crawl when other processes keep the cores busy."""
    monkeypatch.setenv("LEADSCORE_THREADS", "1")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    n = 600
    signal = rng.normal(size=n)
    source = rng.choice(["web", "referral", "event"], n)
    logit = -1.2 + 1.2 * signal + 1.0 * (source == "referral")
    table = pd.DataFrame({
        "score[x]": np.where(rng.random(n) < 0.15, np.nan, signal + rng.normal(0, 0.7, n)),
        "noise": rng.normal(size=n),
        "source": source,
        "converted": (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int),
    })
    schema = infer_schema(table, target="converted")
    X, y = prepare_features(table, schema), table["converted"]
    folds = list(StratifiedKFold(3, shuffle=True, random_state=0).split(X, y))
    return schema, X, y, folds


def _cv_auc(name, params, data):
    schema, X, y, folds = data
    scores = [roc_auc_score(y.iloc[va], make_model(name, schema, params, 42).fit(X.iloc[tr], y.iloc[tr])
                            .predict_proba(X.iloc[va])[:, 1]) for tr, va in folds]
    return float(np.mean(scores))


def test_first_trial_is_the_defaults_and_best_is_not_worse(data, tmp_path):
    schema, X, y, folds = data
    db = tmp_path / "studies" / "lgbm.db"  # parent directory does not exist yet
    result = tune("lightgbm", schema, X, y, folds, n_trials=3, storage=db)
    defaults = _cv_auc("lightgbm", {}, data)
    study = optuna.load_study(study_name="lightgbm-roc_auc", storage=f"sqlite:///{db}")
    assert study.trials[0].params == search_defaults("lightgbm")
    assert study.trials[0].value == pytest.approx(defaults, abs=1e-6)
    assert result.best_value >= defaults - 1e-6
    assert result.best_value == pytest.approx(max(t.value for t in study.trials))
    assert (result.name, result.metric, result.n_trials, result.study_name) == (
        "lightgbm", "roc_auc", 3, "lightgbm-roc_auc")
    assert _cv_auc("lightgbm", result.best_params, data) == pytest.approx(result.best_value, abs=1e-6)


def test_persistent_study_continues_without_exceeding_budget(data, tmp_path):
    schema, X, y, folds = data
    db = tmp_path / "tune.db"
    first = tune("logistic", schema, X, y, folds, n_trials=3, storage=db, metric="log_loss")
    assert first.n_trials == 3
    second = tune("logistic", schema, X, y, folds, n_trials=5, storage=db, metric="log_loss")
    assert second.n_trials == 5 and second.best_value <= first.best_value
    again = tune("logistic", schema, X, y, folds, n_trials=5, storage=str(db), metric="log_loss")
    study = optuna.load_study(study_name="logistic-log_loss", storage=f"sqlite:///{db}")
    assert again.n_trials == 5 and len(study.trials) == 5
    assert again.best_params == second.best_params
    with pytest.raises(ConfigError, match="expected settings"):
        tune("logistic", schema, X, y, folds, n_trials=6, storage=db, metric="log_loss",
             base_params={"smote": True})


def test_timeout_stops_early_and_logging_is_restored(data):
    schema, X, y, folds = data
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.INFO)
    try:
        result = tune("logistic", schema, X, y, folds, n_trials=10_000, timeout=1.0)
        assert optuna.logging.get_verbosity() == optuna.logging.INFO
    finally:
        optuna.logging.set_verbosity(before)
    assert 1 <= result.n_trials + result.n_pruned < 10_000
    assert result.seconds < 20


def test_bad_trials_are_pruned(data, monkeypatch):
    schema, X, y, folds = data
    # tiny C gives near-constant probabilities: clearly worse log loss after the first fold
    monkeypatch.setitem(models.SEARCH_SPACES, "logistic", {"C": Param("float", 1e-7, 10.0, log=True)})
    result = tune("logistic", schema, X, y, folds, n_trials=20, metric="log_loss", seed=0)
    assert result.n_pruned > 0
    assert result.n_trials + result.n_pruned == 20


def test_base_params_are_kept_fixed(data):
    schema, X, y, folds = data
    result = tune("logistic", schema, X, y, folds, n_trials=2, base_params={"smote": True}, metric="brier")
    assert result.best_params["smote"] is True and set(result.best_params) == {"smote", "C"}
    assert "smote" in make_model("logistic", schema, result.best_params).named_steps


def test_fixed_params_are_never_searched(data, tmp_path):
    schema, X, y, folds = data  # noqa: N806
    db = tmp_path / "s.db"
    result = tune("xgboost", schema, X, y, folds, n_trials=3, storage=db,
                  base_params={"max_depth": 6, "n_estimators": 60}, fixed_params={"max_depth": 2})
    assert result.best_params["max_depth"] == 2 and result.n_trials == 3
    study = optuna.load_study(study_name=result.study_name, storage=f"sqlite:///{db}")
    assert all("max_depth" not in t.params for t in study.trials)
    assert {t.params.get("n_estimators") is not None for t in study.trials} == {True}


def test_bad_inputs_are_rejected(data):
    schema, X, y, folds = data
    with pytest.raises(ConfigError, match="unknown metric 'f1'"):
        tune("logistic", schema, X, y, folds, metric="f1")
    with pytest.raises(ConfigError, match="unknown model"):
        tune("svm", schema, X, y, folds)
    one_class = np.flatnonzero(y.to_numpy() == 0)[:50]
    with pytest.raises(DataValidationError, match="fold 0 validation rows: expected both classes"):
        tune("logistic", schema, X, y, [(folds[0][0], one_class)])
