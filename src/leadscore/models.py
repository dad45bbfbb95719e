"""Candidate estimators by name: a preprocessing + classifier pipeline for a table schema."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pandas as pd
from lightgbm import LGBMClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from leadscore.exceptions import ConfigError
from leadscore.features import build_preprocessor
from leadscore.schema import TableSchema

_UNSAFE = re.compile(r"[^0-9A-Za-z_]+")
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "logistic": {"C": 0.5, "max_iter": 3000},
    "lightgbm": {
        "n_estimators": 400, "learning_rate": 0.03, "num_leaves": 15, "min_child_samples": 50,
        "subsample": 0.8, "subsample_freq": 1, "colsample_bytree": 0.8, "reg_lambda": 1.0,
    },
}


def _safe_names(X: Any) -> Any:
    """Column names LightGBM accepts (it rejects JSON characters such as ``[]{}:,"``)."""
    if not isinstance(X, pd.DataFrame):
        return X
    names = [f"f{i}_{_UNSAFE.sub('_', str(name))}" for i, name in enumerate(X.columns)]
    return X.set_axis(names, axis=1)


class CategoricalLGBMClassifier(LGBMClassifier):
    """LightGBM that treats the ``cat__*`` columns of a pandas input as categorical features.

    Column names are made safe for LightGBM, so any CRM export header works.
    """

    def fit(  # type: ignore[override]
        self, X: pd.DataFrame, y: Any, **kwargs: Any  # noqa: N803
    ) -> CategoricalLGBMClassifier:
        if isinstance(X, pd.DataFrame) and "categorical_feature" not in kwargs:
            kwargs["categorical_feature"] = [
                i for i, name in enumerate(X.columns) if str(name).startswith("cat__")
            ] or "auto"
        super().fit(_safe_names(X), y, **kwargs)
        return self

    def predict_proba(self, X: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]  # noqa: N803
        return super().predict_proba(_safe_names(X), *args, **kwargs)


def _logistic(schema: TableSchema, params: dict[str, Any], seed: int) -> Pipeline:
    clf = LogisticRegression(**{**DEFAULT_PARAMS["logistic"], **params, "random_state": seed})
    return Pipeline([("prep", build_preprocessor(schema, "linear")), ("model", clf)])


def _lightgbm(schema: TableSchema, params: dict[str, Any], seed: int) -> Pipeline:
    clf = CategoricalLGBMClassifier(**{**DEFAULT_PARAMS["lightgbm"], **params,
                                       "random_state": seed, "n_jobs": 2, "verbosity": -1})
    return Pipeline([("prep", build_preprocessor(schema, "tree")), ("model", clf)])


CANDIDATES: dict[str, Callable[[TableSchema, dict[str, Any], int], Pipeline]] = {
    "logistic": _logistic,
    "lightgbm": _lightgbm,
}


def make_model(name: str, schema: TableSchema, params: dict[str, Any] | None = None,
               seed: int = 42) -> Pipeline:
    """An unfitted pipeline for candidate ``name`` (one of :data:`CANDIDATES`)."""
    try:
        build = CANDIDATES[name]
    except KeyError as exc:
        raise ConfigError(
            f"unknown model {name!r}: expected one of {', '.join(sorted(CANDIDATES))}"
        ) from exc
    return build(schema, dict(params or {}), seed)
