"""Compiled XGBoost members: XGBoost itself on a NumPy matrix (float32 sums, exactly as its
``predict_proba`` and ``pred_contribs`` on the DataFrame the pipeline builds)."""

from __future__ import annotations

from typing import Any

import numpy as np
from xgboost import DMatrix, XGBClassifier

from leadscore.core.exceptions import UnsupportedModelError
from leadscore.data.schema import TableSchema
from leadscore.scoring.fastpath.inputs import (
    Batch,
    MemberOutput,
    TreeInput,
    pipeline_steps,
    probability_units,
    threads,
)


class XGBoostMember:
    """A ``tree`` preprocessor + XGBoost pipeline, scored by XGBoost itself on a NumPy matrix (float32
    sums, exactly as its ``predict_proba`` and ``pred_contribs``)."""

    def __init__(self, member: Any, schema: TableSchema) -> None:
        steps, model = pipeline_steps(member)
        if len(steps) != 1 or not isinstance(model, XGBClassifier) or list(model.classes_) != [0, 1]:
            raise UnsupportedModelError("expected a tree preprocessor and a binary XGBClassifier")
        self.input = TreeInput(steps[0], schema)
        self.n_features = len(schema.feature_names)
        self.booster = model.get_booster()
        self.missing = model.missing
        try:
            self.rounds = (0, self.booster.best_iteration + 1)
        except AttributeError:
            self.rounds = (0, 0)

    def run(self, batch: Batch, explain: bool) -> MemberOutput:
        z = self.input.matrix(batch)
        served = np.asarray(self.booster.inplace_predict(z, iteration_range=self.rounds, predict_type="value",
                                                         missing=self.missing, validate_features=False))
        proba = served.astype("float64")
        if not explain:
            return MemberOutput(proba)
        matrix = DMatrix(z, missing=self.missing, nthread=threads(len(z)),
                         feature_names=self.booster.feature_names, feature_types=self.booster.feature_types)
        raw = np.asarray(self.booster.predict(matrix, pred_contribs=True, iteration_range=self.rounds),
                         dtype="float64")
        p0, values = probability_units(raw[:, -1], raw[:, :-1], self.input, self.n_features, proba)
        return MemberOutput(proba, p0, values)
