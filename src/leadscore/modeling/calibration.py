"""Probability calibration: Platt scaling or isotonic regression, chosen on a (time-aware) holdout."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from sklearn.exceptions import NotFittedError
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from leadscore.core.exceptions import ConfigError, DataValidationError, TargetError
from leadscore.evaluation.metrics import METRICS as METRIC_REGISTRY
from leadscore.evaluation.metrics import PROPER_SCORES

METHODS = ("none", "platt", "isotonic")  # simplest first: ties go to the earlier one
METRICS = PROPER_SCORES  # what a calibration method is chosen on (lower is better)
EPS = 1e-6  # calibrated outputs stay in [EPS, 1 - EPS], so log loss is finite


def check_proba(prob: ArrayLike, name: str = "prob") -> np.ndarray:
    """``prob`` as a 1-D float array of finite values in [0, 1]."""
    arr = np.asarray(prob, dtype=float)
    if arr.ndim != 1:
        raise DataValidationError(f"{name}: expected a 1-D array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or arr.size and (arr.min() < 0 or arr.max() > 1):
        raise DataValidationError(f"{name}: expected finite probabilities in [0, 1], got values outside")
    return arr


def check_target(y: ArrayLike, n: int) -> np.ndarray:
    """``y`` as a 1-D int array of 0/1 with ``n`` entries."""
    arr = np.asarray(y)
    if arr.shape != (n,):
        raise TargetError(f"y: expected shape ({n},), got {arr.shape}")
    values = set(np.unique(arr).tolist())
    if not values <= {0, 1}:
        raise TargetError(f"y: expected 0/1 values, got {sorted(values, key=str)[:5]}")
    return arr.astype(int)


def _logit(prob: np.ndarray) -> np.ndarray:
    p = np.clip(prob, EPS, 1 - EPS)
    return np.log(p / (1 - p)).reshape(-1, 1)


class Calibrator:
    """Map raw probabilities to calibrated ones.

    Parameters
    ----------
    method : ``"none"`` (identity, clipped), ``"platt"`` (logistic regression on the logit) or
        ``"isotonic"`` (monotone step function, clipped outside the training range).

    Examples
    --------
    >>> cal = Calibrator("platt").fit([0.1, 0.2, 0.8, 0.9, 0.3, 0.7], [0, 0, 1, 1, 1, 0])
    >>> cal.transform([0.5]).shape
    (1,)
    """

    def __init__(self, method: str = "none") -> None:
        if method not in METHODS:
            raise ConfigError(f"calibration method: expected one of {', '.join(METHODS)}, got {method!r}")
        self.method = method
        self.model_: LogisticRegression | IsotonicRegression | None = None

    def __repr__(self) -> str:
        return f"Calibrator({self.method!r})"

    def fit(self, prob: ArrayLike, y: ArrayLike) -> Calibrator:
        """Learn the mapping from raw probabilities ``prob`` to the observed 0/1 outcomes ``y``."""
        p = check_proba(prob)
        target = check_target(y, len(p))
        if self.method == "platt":
            if len(np.unique(target)) < 2:
                raise TargetError(f"platt calibration: expected both classes in y, got only "
                                  f"{np.unique(target).tolist()}")
            self.model_ = LogisticRegression(C=1e6, max_iter=1000).fit(_logit(p), target)
        elif self.method == "isotonic":
            if not len(p):
                raise DataValidationError("isotonic calibration: expected at least one row, got 0")
            iso = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1, increasing=True)
            self.model_ = iso.fit(p, target)
        return self

    def transform(self, prob: ArrayLike) -> np.ndarray:
        """Calibrated probabilities in [1e-6, 1 - 1e-6], same length as ``prob``."""
        p = check_proba(prob)
        if self.method == "none":
            out = p
        elif self.model_ is None:
            raise NotFittedError(f"Calibrator({self.method!r}) is not fitted: call fit first")
        elif isinstance(self.model_, LogisticRegression):
            out = self.model_.predict_proba(_logit(p))[:, 1] if len(p) else p
        else:
            out = self.model_.predict(p) if len(p) else p
        return np.clip(np.asarray(out, dtype=float), EPS, 1 - EPS)


@dataclass(frozen=True)
class CalibrationChoice:
    """The chosen method, its calibrator refitted on all rows, and every method's holdout scores."""

    method: str
    calibrator: Calibrator
    scores: dict[str, dict[str, float]]


def _holdout_split(y: np.ndarray, order: ArrayLike | None, share: float,
                   seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit_positions, holdout_positions): latest rows by ``order``, else stratified random."""
    n = len(y)
    if order is not None:
        key = np.asarray(order)
        if key.shape != (n,):
            raise DataValidationError(f"order: expected shape ({n},), got {key.shape}")
        ranked = np.argsort(key, kind="stable")
        n_hold = min(max(int(round(n * share)), 1), n - 1)
        return np.sort(ranked[: n - n_hold]), np.sort(ranked[n - n_hold:])
    rng = np.random.default_rng(seed)
    hold = []
    for cls in (0, 1):
        rows = rng.permutation(np.flatnonzero(y == cls))
        hold.append(rows[: int(round(len(rows) * share))])
    holdout = np.sort(np.concatenate(hold))
    if len(holdout) in (0, n):  # tiny inputs: keep both parts non-empty
        holdout = np.sort(rng.permutation(n)[: min(max(int(round(n * share)), 1), n - 1)])
    return np.setdiff1d(np.arange(n), holdout), holdout


def _scores(y: np.ndarray, prob: np.ndarray) -> dict[str, float]:
    return {name: METRIC_REGISTRY[name](y, prob) for name in ("log_loss", "brier", "ece")}


def choose_calibration(prob: ArrayLike, y: ArrayLike, *, order: ArrayLike | None = None,
                       methods: Sequence[str] = METHODS, holdout_share: float = 0.3,
                       metric: str = "log_loss", seed: int = 42) -> CalibrationChoice:
    """Pick the calibration method that scores best on held-out rows, then refit it on all rows.

    Parameters
    ----------
    prob : out-of-fold probabilities of the positive class (not in-sample predictions).
    y : 0/1 outcomes aligned with ``prob``.
    order : e.g. creation times; when given, methods are fitted on the earliest ``1 - holdout_share``
        of rows and scored on the latest ``holdout_share``. Otherwise a seeded stratified random split.
    methods : candidates among ``"none"``, ``"platt"``, ``"isotonic"``.
    metric : ``"log_loss"`` or ``"brier"``, lower is better; ties go to the simpler method.

    Raises
    ------
    ConfigError
        For an unknown method or metric, or ``holdout_share`` outside (0, 1).
    DataValidationError
        For invalid probabilities, targets or ``order``, or fewer than 2 rows.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ConfigError(
            f"methods: expected a non-empty subset of {', '.join(METHODS)}, got {list(methods)}")
    if metric not in METRICS:
        raise ConfigError(f"metric: expected one of {', '.join(METRICS)}, got {metric!r}")
    if not 0 < holdout_share < 1:
        raise ConfigError(f"holdout_share: expected a value in (0, 1), got {holdout_share}")
    p = check_proba(prob)
    target = check_target(y, len(p))
    if len(p) < 2:
        raise DataValidationError(f"choose_calibration: expected at least 2 rows, got {len(p)}")
    fit_rows, hold_rows = _holdout_split(target, order, holdout_share, seed)
    scores: dict[str, dict[str, float]] = {}
    best: str | None = None
    for method in (m for m in METHODS if m in methods):  # simplest first
        try:
            fitted = Calibrator(method).fit(p[fit_rows], target[fit_rows])
        except TargetError:  # platt on a one-class fitting part: not a candidate
            continue
        scores[method] = _scores(target[hold_rows], fitted.transform(p[hold_rows]))
        if best is None or scores[method][metric] < scores[best][metric] - 1e-12:
            best = method
    if best is None:
        raise TargetError(f"choose_calibration: expected both classes in the fitting rows for "
                          f"{list(methods)}, got only {np.unique(target[fit_rows]).tolist()}")
    return CalibrationChoice(best, Calibrator(best).fit(p, target), scores)
