"""The protocol every scoring model follows, and walks over composite models.

A scoring model is a fitted :class:`~leadscore.modeling.ensemble.LeadModel` (weighted members and a
calibrator), a :class:`~leadscore.modeling.segments.SegmentedModel` (routes each lead to one of several
scoring models) or a single fitted estimator. Code that needs the parts asks this module rather than
probing attributes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

import numpy as np

from leadscore.modeling.kinds import is_kind

THREAD_PARAMS = ("n_jobs", "thread_count")  # scikit-learn, LightGBM, XGBoost / CatBoost


@runtime_checkable
class CompositeModel(Protocol):
    """A model made of other models: it predicts, lists its parts and refits without re-tuning."""

    classes_: np.ndarray

    def predict_proba(self, X: Any) -> np.ndarray: ...  # noqa: N803

    def submodels(self) -> list[Any]: ...

    def refit(self, X: Any, y: Any) -> CompositeModel: ...  # noqa: N803


def refit(model: Any, X: Any, y: Any) -> Any:  # noqa: N803
    """The same model (members, weights, calibrators, segments) fitted again on ``X``, ``y``."""
    if isinstance(model, CompositeModel):
        return model.refit(X, y)
    from sklearn.base import clone

    return clone(model).fit(X, y)


def classifiers(model: Any) -> Iterator[Any]:
    """Every final classifier inside ``model``: composite parts are walked, pipelines give their last step."""
    if isinstance(model, CompositeModel):
        for part in model.submodels():
            yield from classifiers(part)
        return
    steps = getattr(model, "steps", None)
    yield steps[-1][1] if steps else model


def set_threads(model: Any, threads: int) -> None:
    """Let every classifier of ``model`` that takes a thread count use ``threads`` (in place).

    Preprocessing steps keep theirs: a parallel ColumnTransformer costs more than it saves per request.
    """
    for estimator in classifiers(model):
        if is_kind(estimator, "catboost"):
            # CatBoost refuses set_params on a fitted model; its predictions already use every core
            # (thread_count=-1), and _init_params is what get_params() and clone() read for refits.
            estimator._init_params["thread_count"] = threads
            continue
        get_params = getattr(estimator, "get_params", None)
        if get_params is None:
            continue
        params = get_params(deep=False)
        for name in THREAD_PARAMS:
            if name in params:
                estimator.set_params(**{name: threads})
