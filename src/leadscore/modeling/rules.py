"""The business baseline: points per attribute or behaviour, calibrated to a conversion probability.

A :class:`RuleScorer` is what sales ops would build by hand (and the control arm of later A/B tests).
Its points are mapped to probabilities on training data, so Brier score and log loss compare
directly with the ML models. The mapping never reorders leads: more points never mean a lower
probability, so the baseline ranks leads exactly as its rules do.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted

from leadscore.core.config import config_items
from leadscore.core.exceptions import ConfigError, DataValidationError, TargetError

log = logging.getLogger(__name__)

ORDER_OPS = (">=", ">", "<=", "<")
OPS = (*ORDER_OPS, "==", "!=", "in", "missing", "present")
CALIBRATIONS = ("platt", "isotonic")
PLATT_C = 100.0  # light ridge on standardised points: finite slope even if the rules separate perfectly


@dataclass(frozen=True)
class Rule:
    """``points`` for every lead whose ``feature`` satisfies ``op value``.

    Strings compare case- and whitespace-insensitively; a missing value only ever matches ``missing``.
    """

    feature: str
    op: str
    value: Any = None
    points: float = 0.0
    label: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.value, list):
            object.__setattr__(self, "value", tuple(self.value))  # hashable, like the rest of a frozen Rule
        problem = _rule_problem(self.feature, self.op, self.value, self.points, self.label)
        if problem:
            raise ConfigError(f"rule on {self.feature!r}: {problem}")
        object.__setattr__(self, "points", float(self.points))

    @property
    def name(self) -> str:
        """The label, or ``"feature op value"`` when there is none."""
        if self.label:
            return self.label
        if self.op in ("missing", "present"):
            return f"{self.feature} {self.op}"
        return f"{self.feature} {self.op} {self.value!r}"


def _is_number(value: Any) -> bool:
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.integer | np.floating):
        return False
    return math.isfinite(float(value))


def _rule_problem(feature: Any, op: Any, value: Any, points: Any, label: Any) -> str | None:
    """Why these rule fields are invalid, or None."""
    if not isinstance(feature, str) or not feature:
        return f"feature: expected a non-empty string, got {feature!r}"
    if op not in OPS:
        return f"unknown op {op!r} (expected one of {', '.join(OPS)})"
    if not _is_number(points):
        return f"points: expected a finite number, got {points!r}"
    if not isinstance(label, str):
        return f"label: expected a string, got {type(label).__name__}"
    if op in ORDER_OPS and not _is_number(value):
        return f"op {op!r}: expected a finite number, got {value!r}"
    if op in ("==", "!=") and not (_is_number(value) or isinstance(value, str)):
        return f"op {op!r}: expected a number or string, got {value!r}"
    if op == "in":
        if not isinstance(value, list | tuple) or not value:
            return f"op 'in': expected a non-empty list, got {value!r}"
        bad = [v for v in value if not (_is_number(v) or isinstance(v, str))]
        if bad:
            return f"op 'in': expected numbers or strings, got {bad[0]!r}"
    return None


def rules_from_config(items: Sequence[Mapping[str, Any]]) -> tuple[Rule, ...]:
    """Rules from a list of mappings (``params.yaml``): keys feature, op, value, points, label.

    Raises
    ------
    ConfigError
        Naming the position of the first invalid rule, e.g. ``rules[3]: unknown op '=>' (...)``.
    """
    rules = []
    for i, item in enumerate(config_items(items, "rules", required=("feature", "op"),
                                          optional=("value", "points", "label"))):
        fields = {"value": None, "points": 0.0, "label": "", **item}
        problem = _rule_problem(**fields)
        if problem:
            raise ConfigError(f"rules[{i}]: {problem}")
        rules.append(Rule(**fields))
    return tuple(rules)


def _fold(value: str) -> str:
    return " ".join(value.split()).casefold()


def _values(column: pd.Series) -> tuple[np.ndarray, bool]:
    """Column values as float (numeric dtype) or object, and whether they are numeric."""
    if pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column):
        return column.to_numpy(dtype="float64", na_value=np.nan), True
    return column.to_numpy(dtype=object, na_value=np.nan), False


def _equal_any(column: pd.Series, wanted: Sequence[Any]) -> np.ndarray:
    """True where the value equals one of ``wanted``: numbers to numbers, strings casefolded."""
    numbers = {float(v) for v in wanted if not isinstance(v, str)}
    texts = {_fold(v) for v in wanted if isinstance(v, str)}
    values, numeric = _values(column)
    if numeric:
        return np.isin(values, list(numbers)) if numbers else np.zeros(len(values), dtype=bool)
    return np.array([
        (_fold(v) in texts) if isinstance(v, str)
        else (_is_number(v) and float(v) in numbers)
        for v in values
    ], dtype=bool)


def rule_matches(rule: Rule, column: pd.Series) -> np.ndarray:
    """Boolean mask: which values of ``column`` satisfy ``rule`` (missing values match only "missing")."""
    missing = column.isna().to_numpy(dtype=bool)
    if rule.op == "missing":
        return missing
    if rule.op == "present":
        return ~missing
    if rule.op in ORDER_OPS:
        values, numeric = _values(column)
        if not numeric:  # categories never satisfy an order comparison; numbers stored as text do
            values = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype="float64")
        with np.errstate(invalid="ignore"):
            result = {">=": values >= rule.value, ">": values > rule.value,
                      "<=": values <= rule.value, "<": values < rule.value}[rule.op]
        return np.asarray(result, dtype=bool) & ~np.isnan(values)
    wanted = rule.value if rule.op == "in" else (rule.value,)
    equal = _equal_any(column, wanted)
    return (~equal & ~missing) if rule.op == "!=" else equal


def _check_frame(X: Any) -> pd.DataFrame:  # noqa: N803
    if not isinstance(X, pd.DataFrame):
        raise DataValidationError(f"expected a pandas DataFrame of prepared features, got {type(X).__name__}")
    return X


def _check_target(y: Any, n: int) -> np.ndarray:
    values = pd.Series(np.asarray(y).ravel())
    if len(values) != n:
        raise TargetError(f"y: expected {n} values (one per row of X), got {len(values)}")
    if values.isna().any() or not values.isin([0, 1]).all():
        raise TargetError(f"y: expected only 0 and 1, got {sorted(values.dropna().unique().tolist())[:5]}")
    labels = values.to_numpy(dtype=int)
    if len(np.unique(labels)) < 2:
        raise TargetError(f"y: expected both classes 0 and 1, got only {int(labels[0]) if n else 'none'}")
    return labels


class RuleScorer(ClassifierMixin, BaseEstimator):
    """Points-based lead scorer with a learned points -> probability mapping.

    Parameters
    ----------
    rules : the point system (see :func:`rules_from_config`).
    calibration : "platt" (logistic regression on the points) or "isotonic" (monotone step function);
        either way more points never give a lower probability.

    Attributes
    ----------
    rules_ : the rules used (those whose feature was present at fit time).
    skipped_rules_ : rules skipped because their feature was absent from the training frame.
    points_range_ : (min, max) total points seen in training.
    classes_ : ``[0, 1]``.
    """

    def __init__(self, rules: tuple[Rule, ...] = (), calibration: str = "platt"):
        self.rules = rules
        self.calibration = calibration

    def _checked_rules(self) -> tuple[Rule, ...]:
        if self.calibration not in CALIBRATIONS:
            raise ConfigError(f"calibration: expected one of {', '.join(CALIBRATIONS)}, "
                              f"got {self.calibration!r}")
        rules = tuple(self.rules)
        for i, rule in enumerate(rules):
            if not isinstance(rule, Rule):
                raise ConfigError(f"rules[{i}]: expected a Rule, got {type(rule).__name__} "
                                  "(use rules_from_config for mappings)")
        return rules

    def fit(self, X: pd.DataFrame, y: Any) -> RuleScorer:  # noqa: N803
        """Keep the rules whose feature is in ``X`` and learn how their points map to probability."""
        rules = self._checked_rules()
        X = _check_frame(X)
        labels = _check_target(y, len(X))
        self.rules_ = tuple(r for r in rules if r.feature in X.columns)
        self.skipped_rules_ = tuple(r for r in rules if r.feature not in X.columns)
        if self.skipped_rules_:
            log.warning("rule baseline: %d rule(s) skipped, feature absent: %s", len(self.skipped_rules_),
                        ", ".join(sorted({r.feature for r in self.skipped_rules_})))
        points = self.points(X)
        self.points_range_ = (float(points.min()), float(points.max()))
        self.classes_ = np.array([0, 1])
        self.calibration_ = self.calibration
        if self.calibration == "platt":
            self._fit_platt(points, labels)
        else:
            self.isotonic_ = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True,
                                                out_of_bounds="clip").fit(points, labels)
        return self

    def _fit_platt(self, points: np.ndarray, labels: np.ndarray) -> None:
        center, scale = float(points.mean()), float(points.std())
        scale = scale if scale > 0 else 1.0
        model = LogisticRegression(C=PLATT_C).fit(((points - center) / scale)[:, None], labels)
        slope, intercept = float(model.coef_[0, 0]) / scale, float(model.intercept_[0])
        intercept -= slope * center
        if slope < 0:
            rate = float(labels.mean())
            log.warning("rule baseline: more points meant fewer conversions in training; "
                        "predicting the base rate %.3f for every lead", rate)
            slope, intercept = 0.0, math.log(rate / (1 - rate))
        self.platt_slope_, self.platt_intercept_ = slope, intercept

    def _active_rules(self) -> tuple[Rule, ...]:
        return self.rules_ if hasattr(self, "rules_") else self._checked_rules()

    def rule_points(self, X: pd.DataFrame) -> pd.DataFrame:  # noqa: N803
        """Points each row earns from each rule: one column per rule (its label), index of ``X``.

        Before ``fit`` every rule is used; after, only ``rules_``. A rule whose feature is absent
        from ``X`` earns nothing.
        """
        X = _check_frame(X)
        rules = self._active_rules()
        absent = sorted({r.feature for r in rules if r.feature not in X.columns})
        if absent:
            log.warning("rule baseline: feature(s) absent, their rules earn no points: %s", ", ".join(absent))
        columns: dict[str, np.ndarray] = {}
        for rule in rules:
            name, k = rule.name, 2
            while name in columns:
                name, k = f"{rule.name} ({k})", k + 1
            hit = rule_matches(rule, X[rule.feature]) if rule.feature in X.columns \
                else np.zeros(len(X), dtype=bool)
            columns[name] = np.where(hit, float(rule.points), 0.0)
        return pd.DataFrame(columns, index=X.index, dtype="float64")

    def points(self, X: pd.DataFrame) -> np.ndarray:  # noqa: N803
        """Total points per row."""
        return self.rule_points(X).sum(axis=1).to_numpy(dtype="float64")

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:  # noqa: N803
        """``(n, 2)`` array: probability of class 0 and of class 1 (conversion)."""
        check_is_fitted(self, "classes_")
        points = self.points(X)
        if self.calibration_ == "platt":
            z = np.clip(self.platt_intercept_ + self.platt_slope_ * points, -500, 500)
            positive = 1.0 / (1.0 + np.exp(-z))
        else:
            positive = self.isotonic_.predict(points)
        return np.column_stack([1.0 - positive, positive])

    def predict(self, X: pd.DataFrame) -> np.ndarray:  # noqa: N803
        """1 where the conversion probability is at least 0.5."""
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)


def _demo(feature: str, op: str, value: Any, points: float, label: str) -> dict[str, Any]:
    return {"feature": feature, "op": op, "value": value, "points": points, "label": label}


# A plausible sales-ops point system for the demo CRM snapshot (leadscore.data.snapshot): not tuned.
DEMO_RULES: tuple[dict[str, Any], ...] = (
    _demo("quote_requests", ">=", 1, 25, "Requested a quote"),
    _demo("meetings", ">=", 1, 20, "Took a meeting"),
    _demo("pricing_page_views", ">=", 2, 10, "Viewed pricing twice or more"),
    _demo("calls_inbound", ">=", 1, 10, "Called us"),
    _demo("form_submissions", ">=", 1, 5, "Submitted a form"),
    _demo("emails_opened", ">=", 3, 5, "Opened 3+ e-mails"),
    _demo("emails_clicked", ">=", 1, 5, "Clicked an e-mail link"),
    _demo("days_since_last_inbound", "missing", None, -10, "Never engaged with us"),
    _demo("seniority", "in", ["c_level", "vp", "director"], 10, "Senior decision maker"),
    _demo("seniority", "==", "student", -10, "Student or intern"),
    _demo("source", "in", ["referral", "partner"], 10, "Came through a referral or partner"),
    _demo("budget", ">=", 25000, 5, "Budget of $25k or more"),
    _demo("email_domain_type", "==", "free", -10, "Free e-mail address"),
    _demo("has_phone", "==", 0, -5, "No phone number"),
    _demo("note_budget", "==", 1, 5, "Mentioned budget"),
    _demo("note_timeline", "==", 1, 5, "Has a timeline"),
    _demo("note_decision_maker", "==", 1, 5, "Talked to the decision maker"),
    _demo("note_not_interested", "==", 1, -25, "Said not interested"),
    _demo("first_response_hours", "<=", 1, 5, "Contacted within an hour"),
)
