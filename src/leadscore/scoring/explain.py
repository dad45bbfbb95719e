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
6. :class:`~leadscore.modeling.segments.SegmentedModel`: each row is explained by the model that scores it.

Steps 2 and 5 (for a non-decreasing calibrator) multiply all of a row's contributions by one factor >= 0,
so each keeps its sign and its share of the row's total. Where features pull in opposite directions the
shares are of a net change, so a steep calibration segment scales both sides up together.
"""

from __future__ import annotations

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
    shap = model.get_feature_importance(pool, type="ShapValues", thread_count=n_threads())
    return np.asarray(shap, "float64")


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
        base[rows], values[rows] = explain_model(sub, X.iloc[rows])
    return base, values


def explain_model(model: Any, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:  # noqa: N803
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
    model : a LeadModel, SegmentedModel, candidate pipeline
        (:func:`leadscore.modeling.candidates.make_model`) or RuleScorer, fitted.
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
    base, values = explain_model(model, X)
    return Contributions(base, pd.DataFrame(values, index=X.index, columns=columns))
