"""Exact per-feature explanations of a lead's calibrated probability, and reasons in plain words.

Tree SHAP values are in log-odds (PITFALLS.md #6); sales sees probability points. The mapping, exact:

1. Each member pipeline's transform steps are applied to ``X`` (samplers such as SMOTE are skipped, as at
   predict time) and its model is explained per transformed column, in its own units, with a base value:
   LightGBM ``pred_contrib``, XGBoost ``pred_contribs`` and CatBoost ``ShapValues`` (tree SHAP, log-odds);
   logistic regression ``coef_j * z_j`` with base ``intercept_`` (the quantile-normal map sends the
   training median to 0); the rules baseline: points per rule (each given to its feature) times the Platt
   slope, base the Platt intercept (isotonic: points, base 0 points, mapped by its step function);
   random forest: shap ``TreeExplainer`` values of class 1, already probabilities.
2. Margin -> probability: with ``S = sum_j c_j``, ``p = sigmoid(base + S)`` and ``p0 = sigmoid(base)``,
   each ``c_j`` becomes ``c_j * (p - p0) / S`` (all 0 when ``|S| < 1e-12``); they sum to ``p - p0``.
   XGBoost adds up in float32: the ~1e-7 gap to the probability it serves is spread over its
   contributions in proportion to their size.
3. Transformed columns are summed back into prepared features: ``num__x`` and
   ``num__missingindicator_x`` -> ``x``; ``cat__source`` and one-hot ``cat__source_referral`` (also the
   infrequent-level column) -> ``source``, the longest matching prefix among the transformer's inputs.
4. Ensemble: weighted sums of the members' contributions and of their ``p0`` give the raw ``p`` and base.
5. Calibration ``g``: contributions are scaled by ``(g(p) - g(p0)) / (p - p0)`` and the base becomes
   ``g(p0)`` (when ``p == p0``: all 0 and base ``g(p)``). So ``base + sum == g(p)``, the served probability.
6. :class:`~leadscore.training.segments.SegmentedModel`: each row is explained by the model that scores it.

Steps 2 and 5 (for a non-decreasing calibrator) multiply all of a row's contributions by one factor >= 0,
so each keeps its sign and its share of the row's total. Where features pull in opposite directions the
shares are of a net change, so a steep calibration segment scales both sides up together.
"""

from __future__ import annotations

import calendar
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from leadscore.core.exceptions import DataValidationError, UnsupportedModelError
from leadscore.core.threads import n_threads
from leadscore.modeling.ensemble import LeadModel
from leadscore.modeling.kinds import is_kind, renames_columns, tree_kind
from leadscore.modeling.preprocessing import safe_names as _safe_names
from leadscore.modeling.rules import RuleScorer
from leadscore.modeling.segments import SegmentedModel

_TINY = 1e-12  # |S| or |p - p0| below this: nothing to share out
MAX_ROUNDING_GAP = 1e-4  # float32 rounding of a member's output; a larger gap is a bug, not rounding


@dataclass(frozen=True)
class Contributions:
    """Per-feature contributions to each row's probability: ``base + values.sum(axis=1)`` is the
    model's ``predict_proba(X)[:, 1]``.

    base : (n,) probability with no information, for each row's model (its calibrated base).
    values : (n, n_features) in probability units; columns are the prepared features (``X.columns``,
        i.e. ``schema.feature_names``), index ``X.index``.
    """

    base: np.ndarray
    values: pd.DataFrame


@dataclass(frozen=True)
class _Margins:
    base: np.ndarray                 # (n,) base value in the model's units
    values: np.ndarray               # (n, m) per transformed column, same units
    names: list[str]                 # transformed column names (m)
    groups: dict[str, list[str]]     # ColumnTransformer part -> its input features
    link: Callable[[np.ndarray], np.ndarray] | None  # units -> probability; None: already probability
    served: np.ndarray | None = None  # the probability predict_proba serves, when it may differ by rounding


def _steps(member: Any) -> tuple[list[Any], Any]:
    """(transform steps used at predict time, final estimator)."""
    if not isinstance(member, Pipeline):
        return [], member
    steps = [step for _, step in member.steps[:-1]
             if step not in (None, "passthrough") and not hasattr(step, "fit_resample")]
    return steps, member.steps[-1][1]


def _groups(steps: list[Any]) -> dict[str, list[str]]:
    for step in steps:
        if isinstance(step, ColumnTransformer):
            return {name: [str(c) for c in cols] for name, trans, cols in step.transformers_
                    if trans != "drop" and isinstance(cols, list | tuple)}
    return {}


def _rule_margins(scorer: RuleScorer, X: pd.DataFrame) -> _Margins:  # noqa: N803
    points = scorer.rule_points(X)
    keep = [i for i, rule in enumerate(scorer.rules_) if rule.feature in X.columns]
    values = points.to_numpy(dtype="float64")[:, keep]
    names = [scorer.rules_[i].feature for i in keep]
    if scorer.calibration_ == "platt":
        slope, intercept = scorer.platt_slope_, scorer.platt_intercept_
        return _Margins(np.full(len(X), intercept), values * slope, names, {}, expit)
    return _Margins(np.zeros(len(X)), values, names, {}, scorer.isotonic_.predict)


def _tree_margins(model: Any, Z: pd.DataFrame) -> np.ndarray:  # noqa: N803
    """(n, m + 1) log-odds contributions, last column the base, for a boosted-tree classifier."""
    if renames_columns(model):
        Z = _safe_names(Z)  # noqa: N806  # the names these wrappers fitted on
    if is_kind(model, "lightgbm"):
        return np.asarray(model.booster_.predict(Z, pred_contrib=True), dtype="float64")
    if is_kind(model, "xgboost"):
        from xgboost import DMatrix

        booster = model.get_booster()
        try:  # the trees predict_proba uses: up to the best iteration after early stopping, else all
            rounds = (0, booster.best_iteration + 1)
        except AttributeError:
            rounds = (0, 0)
        matrix = DMatrix(Z, missing=model.missing, nthread=n_threads())
        return np.asarray(booster.predict(matrix, pred_contribs=True, iteration_range=rounds), "float64")
    from catboost import Pool

    pool = Pool(Z, cat_features=model.get_cat_feature_indices())
    return np.asarray(model.get_feature_importance(pool, type="ShapValues", thread_count=n_threads()), "float64")


def _member_margins(member: Any, X: pd.DataFrame) -> _Margins:  # noqa: N803
    """Contributions of one fitted member, per transformed column, in its own units."""
    if isinstance(member, RuleScorer):
        return _rule_margins(member, X)
    steps, model = _steps(member)
    Z = X  # noqa: N806
    for step in steps:
        Z = step.transform(Z)  # noqa: N806
    if not isinstance(Z, pd.DataFrame):
        raise UnsupportedModelError(
            f"expected the transform steps to output a DataFrame, got {type(Z).__name__}")
    names, groups = [str(c) for c in Z.columns], _groups(steps)
    if tree_kind(model) is not None:
        raw = _tree_margins(model, Z)
        served = model.predict_proba(Z)[:, 1].astype("float64") if is_kind(model, "xgboost") else None
        return _Margins(raw[:, -1], raw[:, :-1], names, groups, expit, served)
    if isinstance(model, LogisticRegression) and model.coef_.shape[0] == 1:
        values = Z.to_numpy(dtype="float64") * model.coef_[0]
        return _Margins(np.full(len(Z), float(model.intercept_[0])), values, names, groups, expit)
    if isinstance(model, RandomForestClassifier):
        import shap  # heavy: only where a forest is explained

        explainer = shap.TreeExplainer(model)
        positive = list(model.classes_).index(1)
        values = np.asarray(explainer.shap_values(Z.to_numpy(dtype="float64")), dtype="float64")
        base = float(np.asarray(explainer.expected_value).ravel()[positive])
        return _Margins(np.full(len(Z), base), values[:, :, positive], names, groups, None)
    raise UnsupportedModelError(
        "expected a pipeline ending in LightGBM, XGBoost, CatBoost, random forest or binary logistic "
        f"regression, or a RuleScorer, got {type(model).__name__}")


def to_probability_units(base: np.ndarray, values: np.ndarray, link: Callable[[np.ndarray], np.ndarray],
                         served: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Step 2 for one member: (p0, contributions in probability units) from margins ``base`` (n,) and
    ``values`` (n, m) in the units ``link`` maps to a probability. ``served``: the probability the model
    serves, when it may differ by float32 rounding (XGBoost)."""
    total = values.sum(axis=1)
    p = link(base + total)
    p0 = np.asarray(link(base), dtype="float64")
    shared = np.abs(total) >= _TINY
    values = values * np.where(shared, (p - p0) / np.where(shared, total, 1.0), 0.0)[:, None]
    if served is None:
        return p0, values
    return _absorb_rounding(p0, values, served - p)


def _probability(margins: _Margins) -> tuple[np.ndarray, np.ndarray]:
    """(p0, contributions in probability units) of one member (step 2)."""
    if margins.link is None:
        return margins.base, margins.values
    return to_probability_units(margins.base, margins.values, margins.link, margins.served)


def _absorb_rounding(p0: np.ndarray, values: np.ndarray, gap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """XGBoost adds up in float32, so its contributions miss its served probability by ~1e-7; spread
    that gap over the contributions in proportion to their size (or onto the base when all are 0)."""
    if np.abs(gap).max(initial=0.0) > MAX_ROUNDING_GAP:
        raise UnsupportedModelError(f"contributions: expected to add up to the prediction within "
                                    f"{MAX_ROUNDING_GAP:g}, got a gap of {np.abs(gap).max():.3g}")
    size = np.abs(values).sum(axis=1)
    spread = np.where(size > 0, gap / np.where(size > 0, size, 1.0), 0.0)
    return p0 + np.where(size > 0, 0.0, gap), values + np.abs(values) * spread[:, None]


def _source_feature(name: str, groups: Mapping[str, list[str]], features: list[str]) -> str | None:
    """The prepared feature a transformed column comes from (step 3), or None."""
    part, sep, rest = name.partition("__")
    inputs = groups.get(part) if sep else None
    if inputs is None:
        inputs, rest = features, name
    if rest in inputs:
        return rest
    indicator = rest.removeprefix("missingindicator_")
    if indicator != rest and indicator in inputs:
        return indicator
    prefixes = [c for c in inputs if rest.startswith(f"{c}_")]
    return max(prefixes, key=len) if prefixes else None


def feature_positions(names: list[str], groups: Mapping[str, list[str]], features: list[str]) -> np.ndarray:
    """Step 3: for each transformed column, the position in ``features`` of the feature it comes from."""
    position = {f: j for j, f in enumerate(features)}
    out = np.empty(len(names), dtype=np.int64)
    for i, name in enumerate(names):
        source = _source_feature(name, groups, features)
        if source not in position:
            raise DataValidationError(f"transformed column {name!r}: expected it to come from one of the "
                                      f"prepared features of X, got no match among {len(features)} columns")
        out[i] = position[source]
    return out


def _to_features(values: np.ndarray, margins: _Margins, features: list[str]) -> np.ndarray:
    mapping = np.zeros((len(margins.names), len(features)))
    mapping[np.arange(len(margins.names)), feature_positions(margins.names, margins.groups, features)] = 1.0
    return values @ mapping


def calibrate_contributions(base: np.ndarray, values: np.ndarray,
                            transform: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Step 5: scale contributions so that base + sum is the calibrated probability ``transform(p)``."""
    n = len(base)
    p0 = np.clip(base, 0.0, 1.0)
    p = np.clip(p0 + values.sum(axis=1), 0.0, 1.0)
    mapped = np.asarray(transform(np.concatenate([p, p0])), dtype="float64")
    gp, gp0 = mapped[:n], mapped[n:]
    moved = np.abs(p - p0) >= _TINY
    scale = np.where(moved, (gp - gp0) / np.where(moved, p - p0, 1.0), 0.0)
    return np.where(moved, gp0, gp), values * scale[:, None]


def _calibrate(base: np.ndarray, values: np.ndarray, calibrator: Any) -> tuple[np.ndarray, np.ndarray]:
    return calibrate_contributions(base, values, calibrator.transform)


def _segmented(model: SegmentedModel, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:  # noqa: N803
    """Step 6: each row explained by the model that scores it (:meth:`SegmentedModel.route`)."""
    base, values = np.zeros(len(X)), np.zeros(X.shape)
    for sub, rows in model.route(X):
        base[rows], values[rows] = _explain(sub, X.iloc[rows])
    return base, values


def _explain(model: Any, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:  # noqa: N803
    """(base, values) arrays for any supported model."""
    if isinstance(model, SegmentedModel):
        return _segmented(model, X)
    ensemble = isinstance(model, LeadModel)
    members, weights = (model.members, model.weights) if ensemble else ({"m": model}, {"m": 1.0})
    features = [str(c) for c in X.columns]
    base, values = np.zeros(len(X)), np.zeros(X.shape)
    for name, member in members.items():
        if weights[name] > 0:  # as in LeadModel.raw_proba
            margins = _member_margins(member, X)
            p0, contrib = _probability(margins)
            base += weights[name] * p0
            values += weights[name] * _to_features(contrib, margins, features)
    if not ensemble or model.calibrator is None:
        return base, values
    return _calibrate(base, values, model.calibrator)


def contributions(model: Any, X: pd.DataFrame) -> Contributions:  # noqa: N803
    """Exact per-feature contributions to each row's probability (see the module docstring).

    Parameters
    ----------
    model : a LeadModel, SegmentedModel, candidate pipeline (:func:`leadscore.modeling.candidates.make_model`) or
        RuleScorer, fitted.
    X : prepared features (:func:`leadscore.data.schema.prepare_features`), as passed to ``predict_proba``.

    Raises
    ------
    DataValidationError
        If ``X`` is not a DataFrame or a model column cannot be traced back to a column of ``X``.
    UnsupportedModelError
        If a member is of a kind that cannot be explained exactly.
    """
    if not isinstance(X, pd.DataFrame):
        raise DataValidationError(f"X: expected a DataFrame of prepared features, got {type(X).__name__}")
    columns = [str(c) for c in X.columns]
    if len(X) == 0:
        return Contributions(np.zeros(0), pd.DataFrame(columns=columns, index=X.index, dtype="float64"))
    base, values = _explain(model, X)
    return Contributions(base, pd.DataFrame(values, index=X.index, columns=columns))


@dataclass(frozen=True)
class Reason:
    """One feature's push on a lead's score, in plain words."""

    field: str                # prepared feature name
    points: int               # score points, signed: round(100 * contribution)
    text: str                 # e.g. "Opened 5 e-mails in the last 7 days (+12)"


@dataclass(frozen=True)
class FeatureText:
    """How a feature reads: ``text`` is a ``str.format`` template of ``v``; ``(s)`` pluralises unless
    ``v`` shows as 1. ``zero`` replaces it for a value of 0, ``missing`` for a missing value, and
    ``names`` turns a number into a word (``names[int(v)]``)."""

    text: str
    zero: str | None = None
    missing: str | None = None
    names: tuple[str, ...] = ()


def _note(topic: str) -> FeatureText:
    return FeatureText(f"Call notes mention {topic}", zero=f"Call notes: no mention of {topic}",
                       missing="No call notes")


_T = FeatureText
FEATURE_TEXT: dict[str, FeatureText] = {  # the demo CRM snapshot (leadscore.data.snapshot)
    "source": _T("Lead source: {v}", missing="Lead source not given"),
    "vertical": _T("Vertical: {v}"), "region": _T("Region: {v}"), "job_title": _T("Job title: {v}"),
    "company_size": _T("Company size: {v} employees"), "seniority": _T("Seniority: {v}"),
    "email_domain_type": _T("{v} e-mail domain", missing="E-mail domain not given"),
    "budget": _T("Budget ${v:,.0f}"),
    "has_phone": _T("Phone number given", zero="No phone number", missing="Phone number unknown"),
    "has_company_name": _T("Company name given", zero="No company name", missing="Company name unknown"),
    "contact_completeness": _T("Profile {v:.0%} complete"),
    "created_month": _T("Created in {v}", names=tuple(calendar.month_name)),
    "created_dayofweek": _T("Created on a {v}", names=tuple(calendar.day_name)),
    "created_hour": _T("Created at {v:02.0f}:00"),
    "created_on_weekend": _T("Created on a weekend", zero="Created on a weekday"),
    "days_since_creation": _T("Lead created {v:,.0f} day(s) ago"),
    "emails_sent": _T("We sent {v:,.0f} e-mail(s)", zero="No e-mails sent yet"),
    "emails_opened": _T("Opened {v:,.0f} e-mail(s)", zero="Opened none of our e-mails"),
    "emails_clicked": _T("Clicked {v:,.0f} e-mail link(s)", zero="Clicked no e-mail link"),
    "email_open_rate": _T("Opened {v:.0%} of our e-mails", missing="No e-mails sent yet"),
    "email_click_rate": _T("Clicked through {v:.0%} of our e-mails", missing="No e-mails sent yet"),
    **{f"email_opens_{d}d": _T(f"Opened {{v:,.0f}} e-mail(s) in the last {d} days") for d in (7, 30)},
    "page_views": _T("Viewed {v:,.0f} web page(s)"),
    **{f"page_views_{d}d": _T(f"Viewed {{v:,.0f}} web page(s) in the last {d} days") for d in (7, 30)},
    **{f"activities_{d}d": _T(f"{{v:,.0f}} activity record(s) in the last {d} days") for d in (7, 30)},
    "pricing_page_views": _T("Viewed pricing {v:,.0f} time(s)", zero="Never viewed pricing"),
    "time_on_site_min": _T("Spent {v:,.0f} min on the website"),
    "avg_seconds_per_page": _T("{v:,.0f} s per page viewed", missing="No page views yet"),
    "form_submissions": _T("Submitted {v:,.0f} form(s)", zero="No form submitted"),
    "quote_requests": _T("Requested {v:,.0f} quote(s)", zero="No quote requested"),
    "calls_inbound": _T("Called us {v:,.0f} time(s)", zero="Never called us"),
    "calls_outbound": _T("We called {v:,.0f} time(s)", zero="Not called by us yet"),
    "call_minutes": _T("{v:,.0f} min on calls"),
    "meetings": _T("Took {v:,.0f} meeting(s)", zero="No meeting yet"),
    "inbound_events": _T("Reached out to us {v:,.0f} time(s)", zero="Never reached out to us"),
    "outbound_events": _T("We reached out {v:,.0f} time(s)", zero="Not contacted yet"),
    "inbound_outbound_ratio": _T("{v:.1f} inbound events per outbound touch"),
    "active_days": _T("Active on {v:,.0f} day(s)"),
    "days_since_last_activity": _T("Last activity {v:,.0f} day(s) ago", missing="No activity yet"),
    "days_since_last_inbound": _T("Last engaged {v:,.0f} day(s) ago", missing="Never engaged with us"),
    "first_response_hours": _T("First contacted {v:,.0f} h after sign-up", missing="Not contacted yet"),
    **{f"note_{key}": _note(topic) for key, topic in (
        ("budget", "a budget"), ("competitor", "a competitor"), ("timeline", "a timeline"),
        ("decision_maker", "the decision maker"), ("not_interested", "a lack of interest"),
        ("callback", "a call-back"), ("no_answer", "an unanswered call"))},
}
VALUE_WORDS = {"c_level": "C-level", "vp": "VP", "p&c": "P&C"}  # values that need more than "_" -> " "


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _words(field: str) -> str:
    return _capital(" ".join(field.replace("_", " ").split()))


def _number(value: float) -> str:
    if value.is_integer():
        return f"{int(value):,}"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


class _Number(float):
    """A float whose plain ``{v}`` shows as 2 or 12.5, not 2.0 or 12.500001."""

    def __format__(self, spec: str) -> str:
        return super().__format__(spec) if spec else _number(float(self))


def _generic(field: str, value: Any) -> str:
    stem, _, suffix = field.rpartition("__")
    if suffix == "present" and not isinstance(value, str):
        return f"{_words(stem)} {'given' if value else 'not given'}"
    if suffix == "free_domain" and not isinstance(value, str):
        return f"{_words(stem)}: {'free' if value else 'business'} e-mail domain"
    if isinstance(value, str):
        return f"{_words(field)}: {VALUE_WORDS.get(value, value.replace('_', ' '))}"
    try:
        return f"{_words(field)}: {_number(float(value))}"
    except (TypeError, ValueError):  # e.g. a timestamp
        return f"{_words(field)}: {value}"


def describe(field: str, value: Any) -> str:
    """Plain words for one feature value, from :data:`FEATURE_TEXT` or a generic fallback.

    Examples
    --------
    >>> describe("quote_requests", 2.0), describe("seniority", "vp"), describe("budget", None)
    ('Requested 2 quotes', 'Seniority: VP', 'Budget not given')
    >>> describe("x [usd]", 12.5)
    'X [usd]: 12.5'
    """
    spec = FEATURE_TEXT.get(field)
    if value is None or (not isinstance(value, str) and bool(pd.isna(value))):
        return _capital(spec.missing) if spec and spec.missing else f"{_words(field)} not given"
    text = None if spec is None else _template(spec, value)
    return _generic(field, value) if text is None else _capital(text)


def _template(spec: FeatureText, value: Any) -> str | None:
    """``spec``'s words for a present value, or None when the value does not fit them."""
    if isinstance(value, str):
        fits = "{v}" in spec.text and not spec.names
        return spec.text.format(v=VALUE_WORDS.get(value, value.replace("_", " "))) if fits else None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if spec.zero is not None and number == 0:
        return spec.zero
    if spec.names:
        known = number.is_integer() and 0 <= number < len(spec.names) and spec.names[int(number)]
        return spec.text.format(v=spec.names[int(number)]) if known else None
    text = spec.text.format(v=_Number(number))
    return text.replace("(s)", "" if f"{abs(number):.0f}" == "1" else "s")


def score_points(contrib: Contributions) -> pd.DataFrame:
    """Contributions in score points (the 0-100 score is ``100 * probability``): ``100 * values``."""
    return contrib.values * 100.0


def _picks(raw: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(order, points, up counts, down counts): per row the features by contribution, largest first
    (ties by column), their points ``rint(100 * value)``, and how many to show per side (at most k)."""
    order = np.argsort(-raw, axis=1, kind="stable")
    points = np.rint(100.0 * raw).astype(int)
    up = np.minimum((points > 0).sum(axis=1), k)  # points fall along ``order``: positives lead,
    down = np.minimum((points < 0).sum(axis=1), k)  # negatives trail
    return order, points, up, down, order[:, ::-1]


def _shown(value: Any) -> Any:
    return float(value) if isinstance(value, np.floating) else value


def reason_items(values: np.ndarray, columns: Mapping[str, np.ndarray], fields: list[str],
                 k: int) -> list[dict[str, list[Reason]]]:
    """:func:`top_reasons` on arrays: ``values`` (n, len(fields)) contributions, ``columns`` the
    prepared feature arrays by name (the values shown in the texts)."""
    raw = np.asarray(values, dtype="float64")
    order, points, up, down, reverse = _picks(raw, k)
    shown = [columns[f] for f in fields]
    return [{side: [_reason(fields[j], int(points[r, j]), _shown(shown[j][r])) for j in cols[r, :count[r]]]
             for side, cols, count in (("positive", order, up), ("negative", reverse, down))}
            for r in range(len(raw))]


def _value_key(value: Any) -> tuple[Any, ...]:
    if isinstance(value, str):
        return ("s", value)
    if isinstance(value, float) and value == value:
        return ("f", value, math.copysign(1.0, value))  # 0.0 and -0.0 read differently
    return ("r", type(value).__name__, repr(value))


def reason_texts(values: np.ndarray, columns: Mapping[str, np.ndarray], fields: list[str],
                 k: int) -> list[str]:
    """Per row, ``{"positive": [...], "negative": [...]}`` as JSON text (:func:`json.dumps`, non-ASCII
    kept) of :func:`reason_items`, each item ``{"field", "points", "text"}``; identical items are
    rendered once."""
    raw = np.asarray(values, dtype="float64")
    order, points, up, down, reverse = _picks(raw, k)
    shown = [columns[f] for f in fields]
    done: dict[tuple[int, int, Any], str] = {}

    def item(r: int, j: int) -> str:
        value = _shown(shown[j][r])
        key = (j, int(points[r, j]), _value_key(value))
        text = done.get(key)
        if text is None:
            reason = _reason(fields[j], key[1], value)
            item = {"field": reason.field, "points": reason.points, "text": reason.text}
            text = done[key] = json.dumps(item, ensure_ascii=False)
        return text

    return ['{"positive": [' + ", ".join(item(r, j) for j in order[r, :up[r]]) + '], "negative": ['
            + ", ".join(item(r, j) for j in reverse[r, :down[r]]) + "]}" for r in range(len(raw))]


def top_reasons(contrib: Contributions, X: pd.DataFrame, k: int = 3) -> list[dict[str, list[Reason]]]:  # noqa: N803
    """Per row, the ``k`` features that raised the score most and the ``k`` that lowered it most.

    Parameters
    ----------
    contrib : from :func:`contributions` on ``X``.
    X : the prepared features explained (same index), for the values shown in the text.
    k : at most this many reasons per side.

    Returns
    -------
    One ``{"positive": [...], "negative": [...]}`` per row, each side largest first; a feature
    whose points round to 0 is never shown.
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 0:
        raise DataValidationError(f"k: expected an integer >= 0, got {k!r}")
    values = contrib.values
    if not isinstance(X, pd.DataFrame) or not X.index.equals(values.index):
        raise DataValidationError("X: expected the prepared features that were explained (same index), "
                                  f"got {type(X).__name__} with a different index")
    absent = [c for c in values.columns if c not in X.columns]
    if absent:
        raise DataValidationError(f"X: expected the explained columns, got none for {absent[:5]}")
    columns = {str(c): X[c].to_numpy(dtype=object) for c in values.columns}
    return reason_items(values.to_numpy(dtype="float64"), columns, [str(c) for c in values.columns], k)


def _reason(field: str, points: int, value: Any) -> Reason:
    return Reason(field, points, f"{describe(field, value)} ({points:+d})")
