"""The metric registry: every model metric leadscore computes, with its function and direction.

Tuning, model selection, calibration choice, segment decisions, bootstrap intervals, evaluation and the
reports all look metrics up here, so a metric's definition and whether higher is better live in one
place.

>>> METRICS["brier"].higher_is_better
False
>>> better("roc_auc", 0.8, 0.7), better("log_loss", 0.3, 0.2)
(True, False)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

from leadscore.core.exceptions import ConfigError

CLIP = 1e-7  # probabilities are clipped to [CLIP, 1 - CLIP] before log loss


def expected_calibration_error(y_true: Any, prob: Any, bins: int = 10) -> float:
    """Weighted mean |observed rate - mean predicted| over equal-width probability bins."""
    y_true, prob = np.asarray(y_true, float), np.asarray(prob, float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(prob, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.sum() * abs(y_true[mask].mean() - prob[mask].mean())
    return float(total / len(prob))


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    return float(log_loss(y, p, labels=[0, 1]))  # callers that need a finite value clip first


def _brier(y: np.ndarray, p: np.ndarray) -> float:
    return float(brier_score_loss(y, p, labels=[0, 1]))


def top_decile(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """Conversion rate of the 10% highest-scored leads, and that rate divided by the overall rate
    (the lift; NaN without converters)."""
    base = float(np.mean(y))
    rate = float(np.mean(y[p >= np.quantile(p, 0.9)]))
    return rate, rate / base if base > 0 else float("nan")


def top_decile_lift(y: np.ndarray, p: np.ndarray) -> float:
    """Conversion rate of the 10% highest-scored leads divided by the overall rate."""
    return top_decile(y, p)[1]


@dataclass(frozen=True)
class Metric:
    """One metric of predicted probabilities against 0/1 outcomes."""

    name: str
    function: Callable[[np.ndarray, np.ndarray], float]  # (y, prob) -> value
    higher_is_better: bool
    label: str  # for tables and charts

    def __call__(self, y_true: Any, prob: Any) -> float:
        return float(self.function(np.asarray(y_true, dtype=int), np.asarray(prob, dtype=float)))


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("roc_auc", lambda y, p: float(roc_auc_score(y, p)), True, "ROC-AUC"),
    Metric("pr_auc", lambda y, p: float(average_precision_score(y, p)), True, "PR-AUC"),
    Metric("brier", _brier, False, "Brier score"),
    Metric("log_loss", _log_loss, False, "log loss"),
    Metric("ece", expected_calibration_error, False, "expected calibration error"),
    Metric("top_decile_lift", top_decile_lift, True, "top-decile lift"),
)}
SELECTION_METRICS = ("roc_auc", "log_loss", "brier")  # what tuning and model selection may optimise
PROPER_SCORES = ("log_loss", "brier")  # what calibration and ensemble weights minimise


def get_metric(name: str, allowed: tuple[str, ...] | None = None) -> Metric:
    """The registered metric ``name``; :class:`ConfigError` naming the choices if it is unknown."""
    choices = allowed or tuple(METRICS)
    if name not in choices:
        raise ConfigError(f"unknown metric {name!r}: expected one of {', '.join(choices)}")
    return METRICS[name]


def better(name: str, a: float, b: float) -> bool:
    """True if value ``a`` of metric ``name`` is strictly better than ``b``."""
    return a > b if get_metric(name).higher_is_better else a < b


def sort_key(name: str) -> Callable[[float], float]:
    """A key that sorts values of metric ``name`` best first."""
    sign = -1.0 if get_metric(name).higher_is_better else 1.0
    return lambda value: sign * value


def classification_metrics(y_true: Any, prob: Any, bins: int = 10) -> dict[str, float]:
    """ROC-AUC, PR-AUC (average precision), Brier score, log loss, ECE, top-decile rate and lift."""
    y, p = np.asarray(y_true, dtype=int), np.clip(np.asarray(prob, dtype=float), CLIP, 1 - CLIP)
    base = float(y.mean())
    top_rate, top_lift = top_decile(y, p)
    return {
        "n": int(len(y)),
        "positive_rate": round(base, 6),
        "roc_auc": round(METRICS["roc_auc"](y, p), 6),
        "pr_auc": round(METRICS["pr_auc"](y, p), 6),
        "brier": round(METRICS["brier"](y, p), 6),
        "log_loss": round(METRICS["log_loss"](y, p), 6),
        "ece": round(expected_calibration_error(y, p, bins), 6),
        "top_decile_rate": round(top_rate, 6),
        "top_decile_lift": round(top_lift, 4),
    }
