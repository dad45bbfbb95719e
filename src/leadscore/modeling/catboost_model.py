"""CatBoost with native categorical features, and its preprocessing (imported only when used)."""

from __future__ import annotations

from typing import Any

import pandas as pd
from catboost import CatBoostClassifier
from sklearn.compose import ColumnTransformer
from sklearn.preprocessing import FunctionTransformer

from leadscore.data.schema import TableSchema

MISSING_CATEGORY = "(missing)"


class CategoricalCatBoostClassifier(CatBoostClassifier):
    """CatBoost with the ``cat__*`` columns of a pandas input as native categorical features.

    The positions are passed to ``fit`` rather than the constructor: a list-valued ``cat_features``
    parameter breaks ``sklearn.base.clone`` with catboost 1.2.10 (catboost issue #3078).
    """

    def fit(self, X: Any, y: Any = None, **kwargs: Any) -> CategoricalCatBoostClassifier:  # noqa: N803
        if isinstance(X, pd.DataFrame) and kwargs.get("cat_features") is None:
            kwargs["cat_features"] = [i for i, name in enumerate(X.columns) if str(name).startswith("cat__")]
        super().fit(X, y, **kwargs)
        return self


def _category_text(X: Any) -> pd.DataFrame:  # noqa: N803
    """Categories as plain strings, missing ones as ``"(missing)"`` (CatBoost rejects NaN there)."""
    frame = pd.DataFrame(X).astype(object)
    text = frame.where(frame.notna(), MISSING_CATEGORY).map(str)
    return text.astype(object)


def catboost_preprocessor(schema: TableSchema) -> ColumnTransformer:
    transformers: list[tuple[str, Any, list[str]]] = []
    if schema.numeric_features:
        transformers.append(("num", "passthrough", schema.numeric_features))
    if schema.categorical_features:
        text = FunctionTransformer(_category_text, feature_names_out="one-to-one")
        transformers.append(("cat", text, schema.categorical_features))
    return ColumnTransformer(transformers, remainder="drop").set_output(transform="pandas")
