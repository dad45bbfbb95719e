"""Weighted ensembles: weights fitted on out-of-fold predictions, and the final calibrated scorer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.optimize import minimize
from sklearn.base import clone

from leadscore.core.exceptions import ConfigError, DataValidationError
from leadscore.modeling.calibration import METRICS, Calibrator, check_target

MIN_WEIGHT = 1e-3  # smaller optimised weights are set to 0
_CLIP = 1e-7  # probabilities are clipped to [_CLIP, 1 - _CLIP] inside the log-loss objective


def _objective(metric: str, oof: np.ndarray, y: np.ndarray) -> Any:
    """(value, gradient) of ``metric`` of ``oof @ w`` as a function of the weights ``w``."""
    def log_loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        p = np.clip(oof @ w, _CLIP, 1 - _CLIP)
        value = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
        grad = -(oof.T @ (y / p - (1 - y) / (1 - p))) / len(y)
        return float(value), grad

    def brier(w: np.ndarray) -> tuple[float, np.ndarray]:
        residual = oof @ w - y
        return float(np.mean(residual ** 2)), 2 * (oof.T @ residual) / len(y)

    return log_loss if metric == "log_loss" else brier


def optimize_weights(oof: np.ndarray, y: ArrayLike, *, metric: str = "log_loss") -> np.ndarray:
    """Non-negative weights summing to 1 that minimise ``metric`` of the weighted average probability.

    Parameters
    ----------
    oof : (n_rows, n_models) out-of-fold probabilities of the positive class, one column per model.
    y : 0/1 outcomes aligned with the rows of ``oof``.
    metric : ``"log_loss"`` or ``"brier"``.

    Returns
    -------
    One weight per column. SLSQP from equal weights, so the result is deterministic; weights below
    ``MIN_WEIGHT`` are set to 0 and the rest renormalised.

    Examples
    --------
    >>> oof = np.array([[0.9, 0.5], [0.1, 0.5], [0.8, 0.5], [0.2, 0.5]])
    >>> optimize_weights(oof, [1, 0, 1, 0]).round(2).tolist()
    [1.0, 0.0]
    """
    if metric not in METRICS:
        raise ConfigError(f"metric: expected one of {', '.join(METRICS)}, got {metric!r}")
    probs = np.asarray(oof, dtype=float)
    if probs.ndim != 2 or probs.shape[0] == 0 or probs.shape[1] == 0:
        raise DataValidationError(
            f"oof: expected a non-empty (n_rows, n_models) array, got shape {probs.shape}")
    if not np.all(np.isfinite(probs)) or probs.min() < 0 or probs.max() > 1:
        raise DataValidationError("oof: expected finite probabilities in [0, 1], got values outside")
    target = check_target(y, probs.shape[0]).astype(float)
    m = probs.shape[1]
    start = np.full(m, 1.0 / m)
    if m == 1:
        return start
    fun = _objective(metric, probs, target)
    result = minimize(fun, start, jac=True, method="SLSQP", bounds=[(0.0, 1.0)] * m,
                      constraints=[{"type": "eq", "fun": lambda w: np.sum(w) - 1.0,
                                    "jac": lambda w: np.ones_like(w)}],
                      options={"maxiter": 500, "ftol": 1e-12})
    weights = np.clip(np.nan_to_num(result.x, nan=0.0), 0.0, None)
    if weights.sum() <= 0 or fun(weights / weights.sum())[0] > fun(start)[0]:
        weights = start  # the optimiser failed to improve on equal weights
    weights = weights / weights.sum()
    weights[weights < MIN_WEIGHT] = 0.0
    return weights / weights.sum()


class LeadModel:
    """The final scorer: weighted average of fitted member pipelines, then a calibrator.

    Parameters
    ----------
    members : name -> fitted estimator with ``predict_proba(X)`` (e.g. sklearn Pipelines).
    weights : name -> weight, over the same names; non-negative and summing to 1.
    calibrator : applied to the weighted average; None leaves it as is.

    Usable wherever a fitted binary classifier is: ``predict_proba(X)[:, 1]`` is the calibrated
    probability of class 1. Picklable with joblib.
    """

    classes_ = np.array([0, 1])

    def __init__(self, members: Mapping[str, Any], weights: Mapping[str, float],
                 calibrator: Calibrator | None = None) -> None:
        if not members:
            raise ConfigError("members: expected at least one fitted model, got none")
        if set(weights) != set(members):
            raise ConfigError(f"weights: expected the member names {sorted(members)}, got {sorted(weights)}")
        missing = [name for name, model in members.items() if not hasattr(model, "predict_proba")]
        if missing:
            raise ConfigError(f"members: expected estimators with predict_proba, got none for {missing}")
        values = np.array([float(weights[name]) for name in members])
        if not np.all(np.isfinite(values)) or values.min() < 0:
            raise ConfigError(f"weights: expected finite values >= 0, got {values.tolist()}")
        if abs(values.sum() - 1.0) > 1e-6:
            raise ConfigError(f"weights: expected a sum of 1, got {values.sum():.8g}")
        self.members = dict(members)
        self.weights = dict(zip(members, values.tolist(), strict=True))
        self.calibrator = calibrator

    def __repr__(self) -> str:
        parts = ", ".join(f"{name}={w:.3f}" for name, w in self.weights.items())
        return f"LeadModel({parts}, calibrator={self.calibrator!r})"

    @property
    def names(self) -> list[str]:
        """Member names, in order."""
        return list(self.members)

    @staticmethod
    def _positive_proba(model: Any, X: Any) -> np.ndarray:  # noqa: N803
        proba = np.asarray(model.predict_proba(X))
        classes = list(getattr(model, "classes_", [0, 1]))
        return proba[:, classes.index(1) if 1 in classes else -1].astype(float)

    def member_proba(self, X: Any) -> pd.DataFrame:  # noqa: N803
        """One column per member: its raw probability of class 1, indexed like ``X``."""
        index = X.index if isinstance(X, pd.DataFrame | pd.Series) else None
        return pd.DataFrame({name: self._positive_proba(model, X) for name, model in self.members.items()},
                            index=index)

    def raw_proba(self, X: Any) -> np.ndarray:  # noqa: N803
        """Weighted average of the members' probabilities, before calibration (zero weights skipped)."""
        total = np.zeros(len(X))
        for name, model in self.members.items():
            if self.weights[name] > 0:
                total += self.weights[name] * self._positive_proba(model, X)
        return np.clip(total, 0.0, 1.0)

    def predict_proba(self, X: Any) -> np.ndarray:  # noqa: N803
        """(n, 2) array: columns are P(y=0) and the calibrated P(y=1)."""
        prob = self.raw_proba(X)
        if self.calibrator is not None:
            prob = self.calibrator.transform(prob)
        return np.column_stack([1.0 - prob, prob])

    def submodels(self) -> list[Any]:
        """The member estimators, in order."""
        return list(self.members.values())

    def refit(self, X: Any, y: Any) -> LeadModel:  # noqa: N803
        """The same members (cloned: same hyper-parameters), weights and calibrator, fitted on ``X``."""
        members = {name: clone(member).fit(X, y) for name, member in self.members.items()}
        return LeadModel(members, self.weights, self.calibrator)

    def predict(self, X: Any, threshold: float = 0.5) -> np.ndarray:  # noqa: N803
        """1 where the calibrated probability is at least ``threshold``, else 0."""
        return (self.predict_proba(X)[:, 1] >= threshold).astype(int)
