"""What kind of estimator an object is, without importing libraries the object does not come from.

An object of a library's class can only exist once that library is imported, so checking
``sys.modules`` first keeps ``import catboost`` out of processes that never touch a CatBoost model.
"""

from __future__ import annotations

import sys
from typing import Any

LIBRARY_CLASSES = {
    "lightgbm": ("lightgbm", "LGBMClassifier"),
    "xgboost": ("xgboost", "XGBClassifier"),
    "catboost": ("catboost", "CatBoostClassifier"),
}


def is_kind(model: Any, kind: str) -> bool:
    """True if ``model`` is an instance of the classifier class of library ``kind``.

    Examples
    --------
    >>> is_kind(object(), "catboost")
    False
    """
    module, name = LIBRARY_CLASSES[kind]
    library = sys.modules.get(module)
    return library is not None and isinstance(model, getattr(library, name))


def tree_kind(model: Any) -> str | None:
    """``"lightgbm"``, ``"xgboost"`` or ``"catboost"`` for a boosted-tree classifier, else None."""
    return next((kind for kind in LIBRARY_CLASSES if is_kind(model, kind)), None)


def renames_columns(model: Any) -> bool:
    """True for the LightGBM/XGBoost wrappers that fit on :func:`~.preprocessing.safe_names` columns."""
    return bool(getattr(model, "renames_columns", False))
