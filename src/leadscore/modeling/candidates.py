"""Candidate estimators by name: a preprocessing + classifier pipeline for a table schema.

Every candidate takes the prepared feature frame (:func:`leadscore.data.schema.prepare_features`), copes with
missing numbers and missing or unseen categories at predict time, survives ``sklearn.base.clone`` and a
joblib round trip, and names its steps ``prep`` and ``model`` (``prep``, ``smote``, ``model`` with SMOTE).
:data:`SEARCH_SPACES` holds the Optuna search space of each candidate.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from leadscore.core.exceptions import ConfigError
from leadscore.core.threads import n_threads
from leadscore.data.schema import TableSchema
from leadscore.modeling.preprocessing import build_preprocessor

if TYPE_CHECKING:
    import optuna

DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "logistic": {"C": 0.5, "solver": "newton-cholesky", "max_iter": 300},  # fast for <~1k features
    "lightgbm": {
        "n_estimators": 400, "learning_rate": 0.03, "num_leaves": 15, "min_child_samples": 50,
        "subsample": 0.8, "subsample_freq": 1, "colsample_bytree": 0.8, "reg_lambda": 1.0,
        "reg_alpha": 0.0,  # LightGBM's own default, stated so tuning can start from it
    },
    "random_forest": {"n_estimators": 300, "min_samples_leaf": 20, "max_features": "sqrt", "max_depth": None},
    "xgboost": {
        "n_estimators": 400, "learning_rate": 0.05, "max_depth": 5, "min_child_weight": 5.0,
        "subsample": 0.8, "colsample_bytree": 0.8, "reg_lambda": 1.0, "reg_alpha": 0.0,
    },
    "catboost": {"iterations": 500, "learning_rate": 0.05, "depth": 6, "l2_leaf_reg": 3.0},
}
# Each builder imports its library when called, so scoring a logistic model never imports CatBoost.
# Thread counts are this machine's (core.threads); a loaded bundle gets the loading machine's.


def _logistic(schema: TableSchema, params: dict[str, Any], seed: int) -> Pipeline:
    smote = bool(params.pop("smote", False))
    clf = LogisticRegression(**{**DEFAULT_PARAMS["logistic"], **params, "random_state": seed})
    prep = build_preprocessor(schema, "linear")
    if smote:  # imbalanced-learn resamples in fit only, so validation and scoring rows stay untouched
        from imblearn.over_sampling import SMOTE
        from imblearn.pipeline import Pipeline as ImbPipeline

        return ImbPipeline([("prep", prep), ("smote", SMOTE(random_state=seed)), ("model", clf)])
    return Pipeline([("prep", prep), ("model", clf)])


def _lightgbm(schema: TableSchema, params: dict[str, Any], seed: int) -> Pipeline:
    from leadscore.modeling.lightgbm_model import CategoricalLGBMClassifier

    clf = CategoricalLGBMClassifier(**{**DEFAULT_PARAMS["lightgbm"], **params,
                                       "random_state": seed, "n_jobs": n_threads(), "verbosity": -1})
    return Pipeline([("prep", build_preprocessor(schema, "tree")), ("model", clf)])


def _random_forest(schema: TableSchema, params: dict[str, Any], seed: int) -> Pipeline:
    # scikit-learn >= 1.4 forests send NaN down a learned branch, so no imputation is needed
    clf = RandomForestClassifier(**{**DEFAULT_PARAMS["random_forest"], **params,
                                    "random_state": seed, "n_jobs": n_threads()})
    return Pipeline([("prep", build_preprocessor(schema, "tree")), ("model", clf)])


def _xgboost(schema: TableSchema, params: dict[str, Any], seed: int) -> Pipeline:
    from leadscore.modeling.xgboost_model import SafeNameXGBClassifier

    clf = SafeNameXGBClassifier(**{**DEFAULT_PARAMS["xgboost"], **params, "tree_method": "hist",
                                   "eval_metric": "logloss", "random_state": seed, "n_jobs": n_threads()})
    return Pipeline([("prep", build_preprocessor(schema, "tree")), ("model", clf)])


def _catboost(schema: TableSchema, params: dict[str, Any], seed: int) -> Pipeline:
    from leadscore.modeling.catboost_model import CategoricalCatBoostClassifier, catboost_preprocessor

    fixed = {"random_seed": seed, "thread_count": n_threads(), "verbose": 0, "allow_writing_files": False}
    clf = CategoricalCatBoostClassifier(**{**DEFAULT_PARAMS["catboost"], **params, **fixed})
    return Pipeline([("prep", catboost_preprocessor(schema)), ("model", clf)])


CANDIDATES: dict[str, Callable[[TableSchema, dict[str, Any], int], Pipeline]] = {
    "logistic": _logistic,
    "lightgbm": _lightgbm,
    "random_forest": _random_forest,
    "xgboost": _xgboost,
    "catboost": _catboost,
}


def make_model(name: str, schema: TableSchema, params: dict[str, Any] | None = None,
               seed: int = 42) -> Pipeline:
    """An unfitted pipeline for candidate ``name`` (one of :data:`CANDIDATES`).

    ``params`` override :data:`DEFAULT_PARAMS`; ``"logistic"`` also takes ``smote: bool`` (default False).
    """
    try:
        build = CANDIDATES[name]
    except KeyError as exc:
        raise ConfigError(
            f"unknown model {name!r}: expected one of {', '.join(sorted(CANDIDATES))}"
        ) from exc
    return build(schema, dict(params or {}), seed)


@dataclass(frozen=True)
class Param:
    """One searched hyperparameter: an int or float range (optionally log-scaled) or a set of choices."""

    kind: Literal["int", "float", "categorical"]
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    step: int = 1
    choices: tuple[Any, ...] = ()


def _int(low: int, high: int, *, log: bool = False, step: int = 1) -> Param:
    return Param("int", low, high, log=log, step=step)


def _float(low: float, high: float, *, log: bool = False) -> Param:
    return Param("float", low, high, log=log)


def _choice(*choices: Any) -> Param:
    return Param("categorical", choices=choices)


# Each range holds the DEFAULT_PARAMS value. On 50k rows x 20 columns (2 cores) the slowest corner fits in
# ~6 s (boosting) to ~30 s (catboost, random forest).
SEARCH_SPACES: dict[str, dict[str, Param]] = {
    "logistic": {"C": _float(1e-3, 10.0, log=True)},
    "lightgbm": {
        "n_estimators": _int(100, 800, step=50), "learning_rate": _float(0.01, 0.2, log=True),
        "num_leaves": _int(7, 63, log=True), "min_child_samples": _int(10, 200, log=True),
        "subsample": _float(0.5, 1.0), "colsample_bytree": _float(0.4, 1.0),
        "reg_lambda": _float(1e-3, 30.0, log=True), "reg_alpha": _float(0.0, 5.0),
    },
    "xgboost": {
        "n_estimators": _int(100, 800, step=50), "learning_rate": _float(0.01, 0.2, log=True),
        "max_depth": _int(3, 8), "min_child_weight": _float(1.0, 50.0, log=True),
        "subsample": _float(0.5, 1.0), "colsample_bytree": _float(0.4, 1.0),
        "reg_lambda": _float(1e-3, 30.0, log=True), "reg_alpha": _float(0.0, 5.0),
    },
    "catboost": {
        "iterations": _int(200, 600, step=50), "learning_rate": _float(0.02, 0.2, log=True),
        "depth": _int(4, 7), "l2_leaf_reg": _float(1.0, 30.0, log=True),
    },
    "random_forest": {
        "n_estimators": _int(100, 400, step=50), "max_features": _choice("sqrt", 0.3, 0.5),
        "min_samples_leaf": _int(10, 100, log=True), "max_depth": _choice(None, 8, 12, 16),
    },
}


def _space(name: str) -> dict[str, Param]:
    try:
        return SEARCH_SPACES[name]
    except KeyError as exc:
        raise ConfigError(
            f"no search space for model {name!r}: expected one of {', '.join(sorted(SEARCH_SPACES))}"
        ) from exc


def suggest_params(name: str, trial: optuna.Trial, skip: Iterable[str] = ()) -> dict[str, Any]:
    """Hyperparameters for candidate ``name`` drawn by an Optuna ``trial`` from :data:`SEARCH_SPACES`
    (except the ``skip`` ones, which are fixed)."""
    params: dict[str, Any] = {}
    skipped = set(skip)
    for key, p in _space(name).items():
        if key in skipped:
            continue
        if p.kind == "int":
            params[key] = trial.suggest_int(key, int(p.low), int(p.high), step=p.step, log=p.log)
        elif p.kind == "float":
            params[key] = trial.suggest_float(key, p.low, p.high, log=p.log)
        else:
            params[key] = trial.suggest_categorical(key, p.choices)
    return params


def search_defaults(name: str) -> dict[str, Any]:
    """The :data:`DEFAULT_PARAMS` values of the parameters searched for ``name`` (a first trial)."""
    return {key: DEFAULT_PARAMS[name][key] for key in _space(name)}

