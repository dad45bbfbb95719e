"""XGBoost with column names it accepts (imported only when used)."""

from __future__ import annotations

from typing import Any

from xgboost import XGBClassifier

from leadscore.modeling.preprocessing import safe_names as _safe_names


class SafeNameXGBClassifier(XGBClassifier):
    """XGBoost on the ``tree`` preprocessor output, with column names made safe for XGBoost."""

    renames_columns = True

    def fit(self, X: Any, y: Any, **kwargs: Any) -> SafeNameXGBClassifier:  # noqa: N803
        super().fit(_safe_names(X), y, **kwargs)
        return self

    def predict_proba(self, X: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N803
        return super().predict_proba(_safe_names(X), *args, **kwargs)
