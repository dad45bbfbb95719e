"""A model per segment (e.g. one per vertical) with fallback to the global model.

:meth:`SegmentedModel.route` is the one place that decides which model scores which lead: prediction,
exact contributions, agreement and refitting all go through it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pandas as pd


class SegmentedModel:
    """Routes each lead to its segment's model, or to the global model.

    Parameters
    ----------
    column : the prepared feature holding the segment (e.g. ``vertical``).
    global_model : scores every lead whose segment has no model of its own.
    segment_models : segment value -> fitted model for that segment's leads.
    """

    classes_ = np.array([0, 1])

    def __init__(self, column: str, global_model: Any, segment_models: Mapping[Any, Any]) -> None:
        self.column = column
        self.global_model = global_model
        self.segment_models = dict(segment_models)

    def __repr__(self) -> str:
        return f"SegmentedModel({self.column!r}, segments={sorted(map(str, self.segment_models))})"

    def _segment(self, X: pd.DataFrame) -> np.ndarray:  # noqa: N803
        """Each row's segment value (None for every row when ``X`` lacks the column)."""
        return X[self.column].to_numpy() if self.column in X.columns else np.full(len(X), None)

    def route(self, X: pd.DataFrame) -> Iterator[tuple[Any, np.ndarray]]:  # noqa: N803
        """(model, row positions) pairs covering every row of ``X`` exactly once; empty groups skipped."""
        segment = self._segment(X)
        owner = np.zeros(len(X), dtype=int)  # 0: the global model
        models = [self.global_model, *self.segment_models.values()]
        for i, value in enumerate(self.segment_models, start=1):
            owner[segment == value] = i
        for i, model in enumerate(models):
            rows = np.flatnonzero(owner == i)
            if len(rows):
                yield model, rows

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:  # noqa: N803
        """(n, 2) array: P(y=0) and P(y=1), each lead scored by the model :meth:`route` picks."""
        prob = np.zeros(len(X))
        for model, rows in self.route(X):
            prob[rows] = model.predict_proba(X.iloc[rows])[:, 1]
        return np.column_stack([1 - prob, prob])

    def model_for(self, value: Any) -> Any:
        """The model that scores leads of segment ``value``."""
        return self.segment_models.get(value, self.global_model)

    def submodels(self) -> list[Any]:
        """The global model, then each segment's model."""
        return [self.global_model, *self.segment_models.values()]

    def refit(self, X: pd.DataFrame, y: pd.Series) -> SegmentedModel:  # noqa: N803
        """The same routing refitted on more rows: the global model on all, each segment on its own."""
        segment = self._segment(X)
        models = {value: model.refit(X[segment == value], y[segment == value])
                  for value, model in self.segment_models.items()}
        return SegmentedModel(self.column, self.global_model.refit(X, y), models)
