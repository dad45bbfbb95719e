from __future__ import annotations

from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

from leadscore.core.exceptions import ConfigError, DataValidationError
from leadscore.modeling.calibration import Calibrator
from leadscore.modeling.ensemble import LeadModel, optimize_weights


def outcomes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    logit = rng.normal(-1.0, 1.5, n)
    truth = 1 / (1 + np.exp(-logit))
    return logit, (rng.random(n) < truth).astype(int)


@pytest.mark.parametrize("metric", ["log_loss", "brier"])
def test_weights_favour_the_informative_model(metric):
    logit, y = outcomes(2000, seed=0)
    informative = 1 / (1 + np.exp(-logit))
    noise = np.random.default_rng(1).uniform(0.05, 0.95, 2000)
    weights = optimize_weights(np.column_stack([noise, informative]), y, metric=metric)
    assert weights.sum() == pytest.approx(1.0)
    assert np.all(weights >= 0)
    assert weights[1] > 0.9


def test_identical_columns_give_valid_weights():
    logit, y = outcomes(500, seed=2)
    p = 1 / (1 + np.exp(-logit))
    weights = optimize_weights(np.column_stack([p, p, p]), y)
    assert weights.shape == (3,)
    assert weights.sum() == pytest.approx(1.0) and np.all(weights >= 0)
    np.testing.assert_array_equal(weights, optimize_weights(np.column_stack([p, p, p]), y))
    assert optimize_weights(p[:, None], y).tolist() == [1.0]


def test_ensemble_of_complementary_predictors_beats_both():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=3000), rng.normal(size=3000)
    truth = 1 / (1 + np.exp(-(a + b)))
    y = (rng.random(3000) < truth).astype(int)
    only_a = 1 / (1 + np.exp(-(a + rng.normal(0, 0.8, 3000))))  # each sees a different half of the signal
    only_b = 1 / (1 + np.exp(-(b + rng.normal(0, 0.8, 3000))))
    oof = np.column_stack([only_a, only_b])
    weights = optimize_weights(oof, y)
    assert np.all(weights > 0.3)
    blend = log_loss(y, oof @ weights)
    assert blend < log_loss(y, only_a) - 0.01 and blend < log_loss(y, only_b) - 0.01


def test_tiny_weights_are_dropped():
    logit, _ = outcomes(1000, seed=4)
    good = 1 / (1 + np.exp(-logit))
    y = (good > 0.5).astype(int)
    flipped = 1 - good  # any weight on it hurts
    weights = optimize_weights(np.column_stack([good, flipped]), y)
    assert weights.tolist() == [1.0, 0.0]


@pytest.fixture(scope="module")
def fitted() -> tuple[dict[str, Any], pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(5)
    X = pd.DataFrame({"a": rng.normal(size=300), "b": rng.normal(size=300)},  # noqa: N806
                     index=pd.RangeIndex(100, 400))
    y = (rng.random(300) < 1 / (1 + np.exp(-(X["a"] - X["b"])))).astype(int)
    members = {"on_a": _ColumnModel(LogisticRegression().fit(X[["a"]], y), ["a"]),
               "both": LogisticRegression().fit(X, y)}
    return members, X, y.to_numpy()


class _ColumnModel:
    """A fitted model that uses only some columns of X (as a pipeline with a column selector would)."""

    def __init__(self, model: LogisticRegression, columns: list[str]) -> None:
        self.model, self.columns, self.classes_ = model, columns, model.classes_

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:  # noqa: N803
        return self.model.predict_proba(X[self.columns])


def test_lead_model_matches_manual_weighted_average(fitted):
    members, X, y = fitted
    model = LeadModel(members, {"both": 0.7, "on_a": 0.3})
    manual = 0.3 * members["on_a"].predict_proba(X)[:, 1] + 0.7 * members["both"].predict_proba(X)[:, 1]
    np.testing.assert_allclose(model.raw_proba(X), manual)
    proba = model.predict_proba(X)
    assert proba.shape == (300, 2)
    np.testing.assert_allclose(proba[:, 1], manual)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    table = model.member_proba(X)
    assert list(table.columns) == ["on_a", "both"] == model.names
    assert table.index.equals(X.index)
    np.testing.assert_array_equal(model.predict(X, threshold=0.4), (manual >= 0.4).astype(int))
    assert model.classes_.tolist() == [0, 1]


def test_lead_model_applies_the_calibrator(fitted):
    members, X, y = fitted
    raw = LeadModel(members, {"on_a": 0.5, "both": 0.5}).raw_proba(X)
    calibrator = Calibrator("platt").fit(raw ** 0.5, y)  # learns to undo the square root
    model = LeadModel(members, {"on_a": 0.5, "both": 0.5}, calibrator)
    np.testing.assert_allclose(model.predict_proba(X)[:, 1], calibrator.transform(raw))
    assert not np.allclose(model.predict_proba(X)[:, 1], raw)


def test_lead_model_joblib_round_trip(fitted, tmp_path):
    members, X, y = fitted
    raw = LeadModel(members, {"on_a": 0.2, "both": 0.8}).raw_proba(X)
    model = LeadModel(members, {"on_a": 0.2, "both": 0.8}, Calibrator("isotonic").fit(raw, y))
    joblib.dump(model, tmp_path / "model.joblib")
    loaded = joblib.load(tmp_path / "model.joblib")
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert loaded.names == model.names


def test_zero_weight_members_are_not_called(fitted):
    members, X, _ = fitted

    class Broken:
        def predict_proba(self, X):  # noqa: N803
            raise AssertionError("should not be called")

    model = LeadModel({**members, "broken": Broken()}, {"on_a": 0.4, "both": 0.6, "broken": 0.0})
    assert model.raw_proba(X).shape == (300,)


def test_lead_model_validates_weights(fitted):
    members, _, _ = fitted
    with pytest.raises(ConfigError, match="member names"):
        LeadModel(members, {"on_a": 1.0})
    with pytest.raises(ConfigError, match="sum of 1"):
        LeadModel(members, {"on_a": 0.5, "both": 0.6})
    with pytest.raises(ConfigError, match=">= 0"):
        LeadModel(members, {"on_a": -0.5, "both": 1.5})
    with pytest.raises(ValueError, match="predict_proba"):
        LeadModel({"x": object()}, {"x": 1.0})


def test_optimize_weights_errors():
    with pytest.raises(ConfigError, match="metric"):
        optimize_weights(np.full((4, 2), 0.5), [0, 1, 0, 1], metric="auc")
    with pytest.raises(DataValidationError, match="n_rows, n_models"):
        optimize_weights(np.full(4, 0.5), [0, 1, 0, 1])
    with pytest.raises(DataValidationError, match="probabilities"):
        optimize_weights(np.full((4, 2), 1.5), [0, 1, 0, 1])
    with pytest.raises(DataValidationError, match="expected shape"):
        optimize_weights(np.full((4, 2), 0.5), [0, 1, 0])
