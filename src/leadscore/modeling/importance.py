"""Feature importance of a fitted scoring model, per input column."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from leadscore.modeling.ensemble import LeadModel
from leadscore.modeling.segments import SegmentedModel


def feature_importance(model: Any) -> pd.Series:
    """Importance per input feature (shares summing to 1), one-hot levels summed back to their column.

    Tree models: total split gain (LightGBM) or impurity/gain importances; linear models: |coefficient|
    on standardised inputs. Ensembles and segmented models: members weighted by their ensemble weight.
    """
    model = model.global_model if isinstance(model, SegmentedModel) else model
    members = model.members if isinstance(model, LeadModel) else None
    if members:
        weights = getattr(model, "weights", {})
        parts = [weights.get(n, 0) * _pipeline_importance(m) for n, m in members.items()
                 if _has_importance(m)]
        series = pd.concat(parts, axis=1).fillna(0).sum(axis=1) if parts else pd.Series(dtype=float)
    else:
        series = _pipeline_importance(model)
    total = series.sum()
    return (series / total if total else series).sort_values(ascending=False).round(5)


def _has_importance(pipeline: Any) -> bool:
    clf = pipeline[-1] if hasattr(pipeline, "steps") else None
    return clf is not None and any(hasattr(clf, a) for a in ("booster_", "feature_importances_", "coef_"))


def _pipeline_importance(pipeline: Any) -> pd.Series:
    prep, model = pipeline[0], pipeline[-1]
    names = prep.get_feature_names_out()
    if hasattr(model, "booster_"):
        values = model.booster_.feature_importance(importance_type="gain")
    elif hasattr(model, "feature_importances_"):
        values = np.asarray(model.feature_importances_, float)
    else:
        values = np.abs(np.ravel(model.coef_))
    columns = _source_columns(prep, names)
    series = pd.Series(values, index=columns, dtype=float).groupby(level=0).sum()
    return series / series.sum() if series.sum() else series


def _source_columns(prep: Any, names: np.ndarray) -> list[str]:
    """Map transformed column names (``num__x``, ``cat__source_web``) back to input columns."""
    inputs = sorted((c for _, _, cols in prep.transformers_ if isinstance(cols, list) for c in cols),
                    key=len, reverse=True)
    result = []
    for name in names:
        bare = str(name).split("__", 1)[-1].removeprefix("missingindicator_")
        result.append(next((c for c in inputs if bare == c or bare.startswith(c + "_")), bare))
    return result
