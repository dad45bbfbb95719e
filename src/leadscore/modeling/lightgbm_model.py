"""LightGBM with native categorical features and column names it accepts (imported only when used)."""

from __future__ import annotations

from typing import Any

import pandas as pd
from lightgbm import LGBMClassifier

from leadscore.modeling.preprocessing import safe_names as _safe_names


class CategoricalLGBMClassifier(LGBMClassifier):
    """LightGBM that treats the ``cat__*`` columns of a pandas input as categorical features.

    Column names are made safe for LightGBM, so any CRM export header works.
    """

    renames_columns = True

    def fit(  # type: ignore[override]
        self, X: pd.DataFrame, y: Any, **kwargs: Any  # noqa: N803
    ) -> CategoricalLGBMClassifier:
        if isinstance(X, pd.DataFrame) and "categorical_feature" not in kwargs:
            kwargs["categorical_feature"] = [
                i for i, name in enumerate(X.columns) if str(name).startswith("cat__")
            ] or "auto"
        super().fit(_safe_names(X), y, **kwargs)
        return self

    def predict_proba(self, X: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N803
        return super().predict_proba(_safe_names(X), *args, **kwargs)
