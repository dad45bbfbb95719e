"""Preprocessing inside the model pipeline, fitted on training folds only (no leakage).

Two flavours over the same prepared table (:func:`leadscore.data.schema.prepare_features`):

* ``linear``: numbers -> median imputation + missing indicators + a quantile map to a normal shape (robust
  to skew and outliers); categories -> one-hot with rare levels pooled and unseen levels ignored.
* ``tree``: numbers pass through (trees handle NaN); categories -> integer codes, rare levels pooled,
  missing and unseen levels as NaN, which LightGBM sends down its learned missing-value branch.
"""

from __future__ import annotations

import re
import warnings
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, QuantileTransformer

from leadscore.data.schema import TableSchema

Flavour = Literal["linear", "tree"]


class QuantileNormal(QuantileTransformer):
    """QuantileTransformer to a normal shape that quietly uses fewer quantiles on small samples."""

    def fit(self, X: Any, y: Any = None) -> QuantileNormal:  # noqa: N803
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="n_quantiles .* is greater than", category=UserWarning)
            return super().fit(X, y)
MIN_CATEGORY_COUNT = 20   # rarer levels are pooled into one "infrequent" level


def build_preprocessor(schema: TableSchema, flavour: Flavour) -> ColumnTransformer:
    """A ColumnTransformer for ``schema``'s prepared features; output columns ``num__*``/``cat__*``."""
    numeric, categorical = schema.numeric_features, schema.categorical_features
    if flavour == "linear":
        numeric_steps = Pipeline([
            ("impute", SimpleImputer(strategy="median", add_indicator=True,
                                     keep_empty_features=True)),
            ("shape", QuantileNormal(n_quantiles=200, output_distribution="normal",
                                     subsample=100_000, random_state=0)),
        ])
        categorical_steps = Pipeline([
            ("impute", SimpleImputer(strategy="constant", fill_value="(missing)",
                                     missing_values=np.nan)),
            ("onehot", OneHotEncoder(handle_unknown="infrequent_if_exist",
                                     min_frequency=MIN_CATEGORY_COUNT, sparse_output=False)),
        ])
    elif flavour == "tree":
        numeric_steps = "passthrough"
        categorical_steps = OrdinalEncoder(
            handle_unknown="use_encoded_value", unknown_value=np.nan, encoded_missing_value=np.nan,
            min_frequency=MIN_CATEGORY_COUNT, dtype=np.float64,
        )
    else:
        raise ValueError(f"flavour must be 'linear' or 'tree', got {flavour!r}")
    transformers = []
    if numeric:
        transformers.append(("num", numeric_steps, numeric))
    if categorical:
        transformers.append(("cat", categorical_steps, categorical))
    return ColumnTransformer(transformers, remainder="drop").set_output(transform="pandas")


_UNSAFE = re.compile(r"[^0-9A-Za-z_]+")


def safe_names(X: Any) -> Any:  # noqa: N803
    """Column names LightGBM and XGBoost accept (they reject characters such as ``[]{}:,"<``)."""
    if not isinstance(X, pd.DataFrame):
        return X
    names = [f"f{i}_{_UNSAFE.sub('_', str(name))}" for i, name in enumerate(X.columns)]
    return X.set_axis(names, axis=1)
