from __future__ import annotations

import joblib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.exceptions import NotFittedError
from sklearn.metrics import log_loss

from leadscore.core.exceptions import ConfigError, DataValidationError, TargetError
from leadscore.evaluation.metrics import expected_calibration_error
from leadscore.modeling.calibration import Calibrator, choose_calibration


def sample(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """True probabilities and outcomes drawn from them."""
    rng = np.random.default_rng(seed)
    truth = rng.beta(1.5, 4.0, n)
    return truth, (rng.random(n) < truth).astype(int)


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_overconfident_probabilities_are_recalibrated(method):
    truth, y = sample(6000, seed=0)
    raw = truth ** 0.5  # systematically too high
    fresh_truth, fresh_y = sample(20000, seed=1)
    fresh_raw = fresh_truth ** 0.5
    assert expected_calibration_error(fresh_y, fresh_raw) > 0.15
    cal = Calibrator(method).fit(raw, y)
    assert expected_calibration_error(fresh_y, cal.transform(fresh_raw)) < 0.02


def test_choose_calibration_fixes_overconfidence():
    truth, y = sample(6000, seed=2)
    choice = choose_calibration(truth ** 0.5, y)
    assert choice.method in {"platt", "isotonic"}
    assert choice.scores["none"]["log_loss"] > choice.scores[choice.method]["log_loss"]
    assert set(choice.scores["none"]) == {"log_loss", "brier", "ece"}
    fresh_truth, fresh_y = sample(20000, seed=3)
    assert expected_calibration_error(fresh_y, choice.calibrator.transform(fresh_truth ** 0.5)) < 0.02


def test_calibrated_probabilities_keep_none_or_barely_differ():
    truth, y = sample(6000, seed=4)
    choice = choose_calibration(truth, y)
    best = choice.scores[choice.method]["log_loss"]
    assert choice.method == "none" or choice.scores["none"]["log_loss"] - best < 1e-3


def test_ties_go_to_the_simpler_method():
    truth, y = sample(300, seed=5)
    choice = choose_calibration(truth, y, methods=("isotonic", "none", "none"))
    assert choice.method in {"none", "isotonic"}
    assert list(choice.scores) == ["none", "isotonic"]  # evaluated simplest first
    y = (np.arange(200) % 3 == 0).astype(int)
    perfect = choose_calibration(y.astype(float), y, methods=("isotonic", "none"))
    assert perfect.scores["isotonic"] == perfect.scores["none"]  # isotonic is the identity here
    assert perfect.method == "none"


def test_time_ordered_holdout_uses_the_latest_rows():
    truth, y = sample(1000, seed=6)
    raw = truth ** 0.7
    order = np.arange(1000)[::-1]  # the latest rows are the first 300 positions
    choice = choose_calibration(raw, y, order=order, methods=("none", "isotonic"))
    expected_none = log_loss(y[:300], np.clip(raw[:300], 1e-6, 1 - 1e-6))
    iso = Calibrator("isotonic").fit(raw[300:], y[300:]).transform(raw[:300])
    assert choice.scores["none"]["log_loss"] == pytest.approx(expected_none, rel=1e-12)
    assert choice.scores["isotonic"]["log_loss"] == pytest.approx(log_loss(y[:300], iso), rel=1e-12)


def test_time_ordered_holdout_follows_drift():
    # most rows are over-confident, but the latest ones (first positions by `order`) are calibrated
    truth, y = sample(4000, seed=8)
    raw = truth ** 0.5
    raw[:1200] = truth[:1200]
    order = np.arange(4000)[::-1]
    assert choose_calibration(raw, y, order=order, methods=("none", "isotonic")).method == "none"
    assert choose_calibration(raw, y, methods=("none", "isotonic")).method == "isotonic"


def test_random_split_is_seeded():
    truth, y = sample(1000, seed=7)
    first = choose_calibration(truth ** 0.7, y, seed=1)
    assert first.scores == choose_calibration(truth ** 0.7, y, seed=1).scores
    assert first.scores != choose_calibration(truth ** 0.7, y, seed=2).scores


def test_outputs_are_clipped_and_picklable(tmp_path):
    y = np.array([0, 0, 0, 1, 1, 1])
    cal = Calibrator("isotonic").fit([0.1, 0.2, 0.3, 0.7, 0.8, 0.9], y)
    out = cal.transform([0.0, 0.15, 1.0])
    assert out[0] == pytest.approx(1e-6) and out[-1] == pytest.approx(1 - 1e-6)
    assert Calibrator().transform([0.0, 1.0]).tolist() == [1e-6, 1 - 1e-6]
    joblib.dump(cal, tmp_path / "cal.joblib")
    np.testing.assert_array_equal(joblib.load(tmp_path / "cal.joblib").transform([0.15, 0.75]),
                                  cal.transform([0.15, 0.75]))


def test_errors():
    with pytest.raises(ConfigError, match="expected one of"):
        Calibrator("beta")
    with pytest.raises(NotFittedError):
        Calibrator("platt").transform([0.5])
    with pytest.raises(DataValidationError, match="probabilities in"):
        Calibrator("platt").fit([0.5, 1.5], [0, 1])
    with pytest.raises(TargetError, match="expected 0/1"):
        Calibrator("isotonic").fit([0.5, 0.4], [0, 2])
    with pytest.raises(TargetError, match="both classes"):
        Calibrator("platt").fit([0.5, 0.4], [1, 1])
    with pytest.raises(ConfigError, match="metric"):
        choose_calibration([0.2, 0.8], [0, 1], metric="auc")
    with pytest.raises(ConfigError, match="holdout_share"):
        choose_calibration([0.2, 0.8], [0, 1], holdout_share=1.0)
    with pytest.raises(DataValidationError, match="order"):
        choose_calibration([0.2, 0.8, 0.5], [0, 1, 0], order=[1, 2])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.integers(0, 1)), min_size=1, max_size=60),
       st.lists(st.floats(-0.5, 1.5), min_size=1, max_size=60))
def test_isotonic_transform_is_monotone_and_bounded(pairs, queries):
    prob, y = map(np.array, zip(*pairs, strict=True))
    cal = Calibrator("isotonic").fit(prob, y)
    grid = np.sort(np.clip(np.array(queries), 0, 1))
    out = cal.transform(grid)
    assert np.all(np.diff(out) >= 0)
    assert np.all((out >= 0) & (out <= 1))
