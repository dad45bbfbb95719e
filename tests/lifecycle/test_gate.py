"""The champion/challenger gate on synthetic score pairs: better -> promote, equal -> keep, worse or
miscalibrated -> reject, too few labels -> keep."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadscore.core.config import PromotionParams
from leadscore.lifecycle.gate import KEEP, PROMOTE, REJECT, judge

SETTINGS = PromotionParams(min_labeled=300, alpha=0.05, brier_tolerance=0.005, ece_tolerance=0.02)


def _population(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = 1 / (1 + np.exp(-(rng.normal(size=n) * 1.5 - 2)))   # calibrated "true" probabilities
    return (rng.random(n) < truth).astype(int), truth


def _noisy(truth: np.ndarray, noise: float, seed: int) -> np.ndarray:
    """A calibrated-ish model that knows the truth up to logit noise."""
    rng = np.random.default_rng(seed)
    logit = np.log(truth / (1 - truth)) + rng.normal(0, noise, len(truth))
    return 1 / (1 + np.exp(-logit))


def test_clearly_better_challenger_is_promoted() -> None:
    y, truth = _population(4000, 0)
    decision = judge(y, _noisy(truth, 1.5, 1), _noisy(truth, 0.3, 2), SETTINGS)
    assert decision.decision == PROMOTE, decision.reasons
    assert decision.figures["challenger_roc_auc"] > decision.figures["champion_roc_auc"]
    assert decision.figures["p_better"] < 0.05


def test_equal_models_are_kept_as_challenger() -> None:
    y, truth = _population(4000, 3)
    model = _noisy(truth, 0.8, 4)
    decision = judge(y, model, model, SETTINGS)
    assert decision.decision == KEEP and "no difference" in decision.reasons[-1]


def _coarse(truth: np.ndarray, bins: int) -> np.ndarray:
    """Calibrated but coarse: every lead gets the mean true probability of its quantile bin."""
    edges = np.quantile(truth, np.linspace(0, 1, bins + 1)[1:-1])
    which = np.digitize(truth, edges)
    return np.array([truth[which == k].mean() for k in range(bins)])[which]


def test_clearly_worse_challenger_is_rejected() -> None:
    y, truth = _population(4000, 5)
    decision = judge(y, _noisy(truth, 0.3, 6), _coarse(truth, 2), SETTINGS)
    assert decision.decision == REJECT and "worse at the 0.05 level" in decision.reasons[-1]


def test_better_ranking_but_miscalibrated_is_rejected() -> None:
    y, truth = _population(4000, 8)
    sharper = _noisy(truth, 0.3, 9)
    inflated = np.clip(sharper * 2.5, 0, 1)   # same ranking, probabilities 2.5x too high
    decision = judge(y, _noisy(truth, 1.5, 10), inflated, SETTINGS)
    assert decision.decision == REJECT and "probabilities worse" in decision.reasons[-1]
    assert decision.figures["challenger_roc_auc"] > decision.figures["champion_roc_auc"]


def test_too_few_labels_keeps_without_a_test() -> None:
    y, truth = _population(299, 11)
    decision = judge(y, _noisy(truth, 1.5, 12), _noisy(truth, 0.1, 13), SETTINGS)
    assert decision.decision == KEEP and "need 300" in decision.reasons[0]
    assert "challenger_roc_auc" not in decision.figures
    assert judge(np.zeros(500, int), truth[:1] .repeat(500), truth[:1].repeat(500), SETTINGS).decision == KEEP


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), swap=st.booleans())
def test_swapping_champion_and_challenger_never_promotes_both(seed: int, swap: bool) -> None:
    y, truth = _population(800, seed)
    a, b = _noisy(truth, 0.6, seed + 1), _noisy(truth, 0.9, seed + 2)
    first, second = (a, b) if swap else (b, a)
    one, other = judge(y, first, second, SETTINGS), judge(y, second, first, SETTINGS)
    assert not (one.decision == PROMOTE and other.decision == PROMOTE)
    if one.decision == PROMOTE:  # b better than a at the level: a is worse than b at the same level
        assert other.decision == REJECT
    assert one.figures["roc_auc_diff"] == pytest.approx(-other.figures["roc_auc_diff"])


def test_small_sample_ece_noise_does_not_reject_a_calibrated_challenger() -> None:
    # the champion predicts the base rate (its ECE is near 0 by construction); the challenger knows the
    # truth. On 400 leads a calibrated model's ECE is several points by chance alone: not a reason.
    y, truth = _population(400, 17)
    base = np.full(len(y), y.mean())
    decision = judge(y, base, truth, SETTINGS)
    assert decision.figures["challenger_ece"] > decision.figures["champion_ece"] + SETTINGS.ece_tolerance
    assert decision.figures["challenger_ece"] <= decision.figures["challenger_ece_noise"]
    assert decision.decision == PROMOTE, decision.reasons
