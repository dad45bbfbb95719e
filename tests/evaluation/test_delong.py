"""DeLong's paired ROC-AUC test against its O(n^2) definition, sklearn and a paired bootstrap."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from leadscore.core.exceptions import DataValidationError
from leadscore.evaluation.comparison import delong_roc_test


def _by_definition(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Structural components straight from DeLong et al. (1988): psi(x, y) = 1, 1/2 or 0 per pair."""
    comps = []
    for s in (a, b):
        x, z = s[y == 1][:, None], s[y == 0][None, :]
        psi = (x > z) + 0.5 * (x == z)
        comps.append((psi.mean(axis=1), psi.mean(axis=0)))
    m, n = int(y.sum()), int((1 - y).sum())
    s10 = np.cov(np.vstack([comps[0][0], comps[1][0]]))
    s01 = np.cov(np.vstack([comps[0][1], comps[1][1]]))
    cov = s10 / m + s01 / n
    return float(comps[1][0].mean() - comps[0][0].mean()), float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])


def test_delong_matches_its_definition_with_ties() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(80) < 0.3).astype(int)
    a = np.round(rng.random(80) + 0.3 * y, 1)       # ties on purpose
    b = np.round(a + rng.normal(0, 0.2, 80), 1)
    got = delong_roc_test(y, a, b)
    diff, variance = _by_definition(y, a, b)
    assert got["auc_a"] == pytest.approx(roc_auc_score(y, a))
    assert got["auc_b"] == pytest.approx(roc_auc_score(y, b))
    assert got["diff"] == pytest.approx(diff) and got["se"] ** 2 == pytest.approx(variance)
    assert got["p_value"] == pytest.approx(2 * norm.sf(abs(diff) / np.sqrt(variance)))
    assert got["p_better"] == pytest.approx(norm.sf(diff / np.sqrt(variance)))


def test_delong_standard_error_agrees_with_a_paired_bootstrap() -> None:
    rng = np.random.default_rng(1)
    n = 3000
    signal = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(signal - 1.5)))).astype(int)
    a = signal + rng.normal(0, 1.0, n)
    b = signal + rng.normal(0, 0.7, n)
    got = delong_roc_test(y, a, b)
    diffs = []
    for _ in range(400):
        idx = rng.integers(0, n, n)
        diffs.append(roc_auc_score(y[idx], b[idx]) - roc_auc_score(y[idx], a[idx]))
    assert got["se"] == pytest.approx(np.std(diffs, ddof=1), rel=0.15)
    assert got["diff"] > 0 and got["p_better"] < 0.01


def test_identical_scores_and_one_class() -> None:
    y = np.array([0, 1, 0, 1, 1, 0])
    p = np.array([0.1, 0.9, 0.3, 0.6, 0.4, 0.2])
    same = delong_roc_test(y, p, p)
    assert same["diff"] == 0 and same["p_value"] == 1.0
    with pytest.raises(DataValidationError, match="both converters and non-converters"):
        delong_roc_test(np.ones(4), p[:4], p[:4])
