"""From probabilities to decisions: a threshold chosen for a business objective, tiers and actions.

A lead's tier is the first (highest) tier whose ``min_probability`` its probability reaches, so a
probability of exactly 0.7 is HIGH_PRIORITY with the default tiers and 0.6999 is MEDIUM_PRIORITY.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from leadscore.core.config import config_items
from leadscore.core.exceptions import ConfigError, DataValidationError, TargetError

OBJECTIVES = ("capacity", "f1", "precision")
TIER_KEYS = ("name", "min_probability", "action")


@dataclass(frozen=True)
class Tier:
    """Leads with probability >= ``min_probability`` (and below the tier above) get ``action``."""

    name: str
    min_probability: float
    action: str


DEFAULT_TIERS: tuple[Tier, ...] = (
    Tier("HIGH_PRIORITY", 0.7, "Call within 1 hour: senior rep, personalised offer"),
    Tier("MEDIUM_PRIORITY", 0.5, "Call today and send a tailored quote"),
    Tier("NURTURE", 0.3, "Add to a nurture e-mail sequence; call back within a week"),
    Tier("LOW_PRIORITY", 0.0, "Automated nurture only"),
)


def _check_tiers(tiers: Sequence[Tier]) -> tuple[Tier, ...]:
    """Validate tiers: unique names, thresholds in [0, 1], strictly descending, the last one 0.0."""
    tiers = tuple(tiers)
    if not tiers:
        raise ConfigError("tiers: expected at least one tier, got none")
    for i, tier in enumerate(tiers):
        if not isinstance(tier, Tier):
            raise ConfigError(f"tiers[{i}]: expected a Tier, got {type(tier).__name__}")
        if not isinstance(tier.name, str) or not tier.name:
            raise ConfigError(f"tiers[{i}]: name: expected a non-empty string, got {tier.name!r}")
        if not isinstance(tier.action, str):
            raise ConfigError(f"tiers[{i}] {tier.name}: action: expected a string, got {tier.action!r}")
        low = tier.min_probability
        if isinstance(low, bool) or not isinstance(low, int | float) or not 0.0 <= low <= 1.0:
            raise ConfigError(f"tiers[{i}] {tier.name}: min_probability: expected a number in [0, 1], "
                              f"got {low!r}")
    names = [t.name for t in tiers]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ConfigError(f"tiers: expected unique names, got {', '.join(duplicated)} more than once")
    lows = [float(t.min_probability) for t in tiers]
    if any(a <= b for a, b in zip(lows, lows[1:], strict=False)):
        raise ConfigError(f"tiers: expected min_probability strictly descending, got {lows}")
    if lows[-1] != 0.0:
        raise ConfigError(f"tiers: expected the lowest min_probability to be 0.0 so every lead gets a tier, "
                          f"got {lows[-1]}")
    return tiers


def tiers_from_config(items: Sequence[Mapping[str, Any]]) -> tuple[Tier, ...]:
    """Tiers from a list of mappings with keys name, min_probability, action (highest tier first).

    Raises
    ------
    ConfigError
        On a missing or unknown key, duplicated names, thresholds outside [0, 1] or not descending,
        or a lowest threshold other than 0.0.
    """
    tiers = [Tier(item["name"], item["min_probability"], item["action"])
             for item in config_items(items, "tiers", required=TIER_KEYS)]
    return _check_tiers(tiers)


def saved_tiers(meta: Mapping[str, Any]) -> tuple[Tier, ...]:
    """The tiers a model's metadata records, else :data:`DEFAULT_TIERS`."""
    saved = meta.get("tiers")
    return tiers_from_config(saved) if saved else DEFAULT_TIERS


def saved_threshold(meta: Mapping[str, Any]) -> float:
    """The decision threshold a model's metadata records, else 0.5."""
    return float((meta.get("threshold") or {}).get("value", 0.5))


def _probabilities(prob: ArrayLike, *, unit: bool = True) -> np.ndarray:
    values = np.asarray(prob, dtype=float)
    if values.ndim != 1:
        raise DataValidationError(f"probabilities: expected a 1-D array, got shape {values.shape}")
    bad = ~np.isfinite(values) | ((values < 0) | (values > 1) if unit else False)
    if bad.any():
        raise DataValidationError(f"probabilities: expected finite values in [0, 1], "
                                  f"got {values[bad][0]!r} ({int(bad.sum())} bad value(s))")
    return values


def assign_tiers(prob: ArrayLike, tiers: Sequence[Tier] = DEFAULT_TIERS) -> tuple[np.ndarray, np.ndarray]:
    """Tier name and recommended action for each probability (object arrays, input order)."""
    tiers = _check_tiers(tiers)
    values = _probabilities(prob)
    ascending = np.array([t.min_probability for t in reversed(tiers)], dtype=float)
    position = np.searchsorted(ascending, values, side="right") - 1  # largest min_probability <= p
    index = len(tiers) - 1 - position
    names = np.array([t.name for t in tiers], dtype=object)
    actions = np.array([t.action for t in tiers], dtype=object)
    return names[index], actions[index]


@dataclass(frozen=True)
class ThresholdChoice:
    """A decision threshold (flag leads with probability >= threshold) and what it achieves."""

    threshold: float
    objective: str
    share_flagged: float
    precision: float
    recall: float
    f1: float
    detail: str


def _labels(y: ArrayLike, n: int) -> np.ndarray:
    labels = np.asarray(y).ravel()
    if len(labels) != n:
        raise TargetError(f"y: expected {n} values (one per probability), got {len(labels)}")
    if not np.isin(labels, [0, 1]).all():
        raise TargetError(f"y: expected only 0 and 1, got {labels[~np.isin(labels, [0, 1])][0]!r}")
    return labels.astype(int)


def threshold_metrics(prob: ArrayLike, y: ArrayLike, threshold: float) -> dict[str, float]:
    """Accuracy, precision, recall, F1 and share of leads flagged when flagging ``prob >= threshold``.

    Precision is 0.0 when nothing is flagged and recall 0.0 when there are no positives.
    """
    values = _probabilities(prob, unit=False)
    labels = _labels(y, len(values))
    if not len(values):
        raise DataValidationError("probabilities: expected at least one value, got none")
    flagged = values >= threshold
    tp = int((flagged & (labels == 1)).sum())
    n_flagged, positives = int(flagged.sum()), int(labels.sum())
    precision = tp / n_flagged if n_flagged else 0.0
    recall = tp / positives if positives else 0.0
    f1 = 2 * tp / (n_flagged + positives) if n_flagged + positives else 0.0
    return {"accuracy": float((flagged == (labels == 1)).mean()), "precision": precision,
            "recall": recall, "f1": f1, "share_flagged": n_flagged / len(values)}


def _curve(values: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each distinct probability (descending) with the precision and F1 of flagging from it up."""
    order = np.argsort(-values, kind="stable")
    ranked, hits = values[order], np.cumsum(labels[order])
    ends = np.flatnonzero(np.r_[ranked[1:] != ranked[:-1], True])
    flagged = ends + 1
    tp = hits[ends]
    return ranked[ends], tp / flagged, 2 * tp / (flagged + labels.sum())


def _capacity_share(capacity_share: float | None, capacity_per_day: float | None,
                    leads_per_day: float | None) -> tuple[float, str]:
    if capacity_share is not None:
        if capacity_per_day is not None or leads_per_day is not None:
            raise ConfigError("capacity: expected capacity_share or capacity_per_day with leads_per_day, "
                              "got both")
        if not 0.0 < capacity_share <= 1.0:
            raise ConfigError(f"capacity_share: expected a number in (0, 1], got {capacity_share!r}")
        return float(capacity_share), ""
    if capacity_per_day is None or leads_per_day is None:
        raise ConfigError("objective 'capacity': expected capacity_share, or capacity_per_day and "
                          "leads_per_day, got neither")
    if not capacity_per_day > 0 or not leads_per_day > 0:
        raise ConfigError(f"capacity: expected capacity_per_day and leads_per_day > 0, got "
                          f"{capacity_per_day!r} and {leads_per_day!r}")
    share = min(1.0, capacity_per_day / leads_per_day)
    return share, f"{capacity_per_day:g} calls for {leads_per_day:g} leads a day = "


def _check_arguments(objective: str, given: dict[str, float | None]) -> None:
    if objective not in OBJECTIVES:
        raise ConfigError(f"unknown objective {objective!r} (expected one of {', '.join(OBJECTIVES)})")
    allowed = {"capacity": {"capacity_share", "capacity_per_day", "leads_per_day"},
               "precision": {"target_precision"}, "f1": set()}[objective]
    extra = sorted(k for k, v in given.items() if v is not None and k not in allowed)
    if extra:
        raise ConfigError(f"objective {objective!r}: expected no {', '.join(extra)}, got {extra[0]}="
                          f"{given[extra[0]]!r}")
    target = given["target_precision"]
    if objective == "precision" and target is None:
        raise ConfigError("objective 'precision': expected target_precision, got none")
    if target is not None and not 0.0 < target <= 1.0:
        raise ConfigError(f"target_precision: expected a number in (0, 1], got {target!r}")


def _from_curve(objective: str, values: np.ndarray, labels: np.ndarray,
                target_precision: float | None) -> tuple[float, str]:
    """Threshold and detail for the "f1" and "precision" objectives."""
    if not labels.any():
        raise TargetError(f"objective {objective!r}: expected at least one positive in y, got none")
    thresholds, precision, f1 = _curve(values, labels)
    if objective == "f1":
        best = int(np.argmax(f1))
        threshold = float(thresholds[best])
        return threshold, f"f1: threshold maximising F1 ({threshold:.3f}, F1 {f1[best]:.3f})"
    if target_precision is None:
        raise ConfigError("objective 'precision': expected target_precision, got none")
    reached = np.flatnonzero(precision >= target_precision - 1e-12)
    if not len(reached):
        raise ConfigError(f"target_precision {target_precision:g} is never reached: expected a threshold "
                          f"with precision >= it, best is {precision.max():.3f}")
    threshold = float(thresholds[reached[-1]])
    return threshold, (f"precision: lowest threshold with precision >= {target_precision:g} "
                       f"(threshold {threshold:.3f}, precision {precision[reached[-1]]:.3f})")


def choose_threshold(prob: ArrayLike, y: ArrayLike, *, objective: str = "f1",
                     capacity_share: float | None = None, capacity_per_day: float | None = None,
                     leads_per_day: float | None = None,
                     target_precision: float | None = None) -> ThresholdChoice:
    """Pick the threshold that serves a business objective on validation probabilities ``prob``.

    Parameters
    ----------
    objective :
        "capacity": flag the top ``capacity_share`` of leads, or ``capacity_per_day / leads_per_day``
        (capped at 1): the threshold is the k-th highest probability, k = max(1, floor(share * n));
        leads tied with it are flagged too.
        "precision": the lowest threshold whose precision reaches ``target_precision``.
        "f1": the threshold maximising F1 (the highest one if several tie).

    Raises
    ------
    ConfigError
        Unknown objective, missing or stray arguments, or a precision target that is never reached.
    """
    _check_arguments(objective, {"capacity_share": capacity_share, "capacity_per_day": capacity_per_day,
                                 "leads_per_day": leads_per_day, "target_precision": target_precision})
    values = _probabilities(prob, unit=False)
    labels = _labels(y, len(values))
    if not len(values):
        raise DataValidationError("probabilities: expected at least one value, got none")
    if objective == "capacity":
        share, prefix = _capacity_share(capacity_share, capacity_per_day, leads_per_day)
        k = max(1, math.floor(share * len(values) + 1e-9))
        threshold = float(np.sort(values)[::-1][k - 1])
        detail = f"capacity: {prefix}top {share * 100:.3g}% of leads (threshold {threshold:.3f})"
    else:
        threshold, detail = _from_curve(objective, values, labels, target_precision)
    metrics = threshold_metrics(values, labels, threshold)
    return ThresholdChoice(threshold=threshold, objective=objective, share_flagged=metrics["share_flagged"],
                           precision=metrics["precision"], recall=metrics["recall"], f1=metrics["f1"],
                           detail=detail)


TIER_MODES = ("capacity", "probability")


def capacity_tiers(items: Sequence[Mapping[str, Any]], prob: ArrayLike, y: ArrayLike, *,
                   leads_per_day: float | None = None) -> tuple[tuple[Tier, ...], list[dict[str, Any]]]:
    """Tiers cut by capacity: each tier but the last has a ``share`` of leads (or ``per_day`` leads a
    day, turned into a share with ``leads_per_day``), highest tier first; the cut-offs are the matching
    quantiles of the out-of-fold probabilities ``prob``. Returns the tiers and, per tier, its share,
    cut-off and expected conversion (the conversion of ``y`` among the out-of-fold leads it takes).

    Raises
    ------
    ConfigError
        On a missing share, shares that do not leave room for the last tier, or a per-day capacity
        without ``leads_per_day``.
    """
    rows = config_items(items, "tiers", required=("name", "action"),
                        optional=("share", "per_day", "min_probability"))
    values, labels = _probabilities(prob), np.asarray(y, dtype=float)
    cumulative, cuts, plan = 0.0, [], []
    for i, item in enumerate(rows[:-1]):
        share = item.get("share")
        if item.get("per_day") is not None:
            if not leads_per_day:
                raise ConfigError(f"tiers[{i}] {item['name']}: per_day needs creation times (leads per day)")
            share = float(item["per_day"]) / leads_per_day
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share < 1:
            raise ConfigError(f"tiers[{i}] {item['name']}: expected share in (0, 1) or per_day, "
                              f"got {share!r}")
        cumulative += float(share)
        if cumulative >= 1:
            raise ConfigError(f"tiers: the shares of the tiers above {rows[-1]['name']} add up to "
                              f"{cumulative:g}; they must leave room for it (< 1)")
        cuts.append(float(np.quantile(values, 1 - cumulative)))
    for i in range(1, len(cuts)):  # equal quantiles (ties): keep the cut-offs strictly descending
        cuts[i] = min(cuts[i], np.nextafter(cuts[i - 1], 0.0))
    tiers = _check_tiers([Tier(item["name"], cut, item["action"]) for item, cut in
                          zip(rows, [*cuts, 0.0], strict=True)])
    upper = np.inf
    for tier in tiers:
        taken = (values >= tier.min_probability) & (values < upper)
        plan.append({"name": tier.name, "min_probability": round(tier.min_probability, 6),
                     "share": round(float(taken.mean()), 4),
                     "expected_conversion": round(float(labels[taken].mean()), 4) if taken.any() else None})
        upper = tier.min_probability
    return tiers, plan
