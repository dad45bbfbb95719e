"""Compiled ``linear`` members: median imputation + missing indicators + quantile-normal map for numbers,
one-hot (rare levels pooled) for categories, and a binary logistic regression."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats
from scipy.special import expit, ndtri
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, QuantileTransformer

from leadscore.core.exceptions import UnsupportedModelError
from leadscore.data.schema import TableSchema
from leadscore.scoring.explain import feature_positions, to_probability_units
from leadscore.scoring.fastpath import kernels
from leadscore.scoring.fastpath.inputs import Batch, MemberOutput, blocks, category_lookup, pipeline_steps

BOUNDS_THRESHOLD = 1e-7  # sklearn.preprocessing._data.BOUNDS_THRESHOLD


def _numeric_steps(transformer: Any) -> bool:
    if not isinstance(transformer, Pipeline) or len(transformer.steps) != 2:
        return False
    impute, shape = (step for _, step in transformer.steps)
    return (isinstance(impute, SimpleImputer) and np.isnan(impute.missing_values) and impute.add_indicator
            and isinstance(shape, QuantileTransformer) and shape.output_distribution == "normal"
            and not hasattr(shape.quantiles_, "tocsc"))


def _category_steps(transformer: Any) -> bool:
    if not isinstance(transformer, Pipeline) or len(transformer.steps) != 2:
        return False
    impute, onehot = (step for _, step in transformer.steps)
    return (isinstance(impute, SimpleImputer) and impute.strategy == "constant"
            and isinstance(onehot, OneHotEncoder) and not onehot.sparse_output)


class LinearMember:
    """The ``linear`` preprocessor and a binary LogisticRegression: margin ``intercept + sum_j coef_j z_j``.

    Numbers: ``z`` is QuantileTransformer's normal map of the imputed value and of the missing indicator,
    computed column by column as scikit-learn does (``np.interp`` both ways, bounds, ``ndtri``, clip).
    Categories: each value's one-hot columns times their coefficients, looked up per distinct value.
    """

    def __init__(self, member: Any, schema: TableSchema) -> None:
        steps, model = pipeline_steps(member)
        if len(steps) != 1 or not isinstance(model, LogisticRegression) or model.coef_.shape[0] != 1 \
                or list(model.classes_) != [0, 1]:
            raise UnsupportedModelError("expected a linear preprocessor and a binary LogisticRegression")
        prep = steps[0]
        self.blocks = blocks(prep, schema, {"linear_numbers": _numeric_steps,
                                            "linear_categories": _category_steps})
        names = [str(n) for n in prep.get_feature_names_out()]
        coef = np.asarray(model.coef_[0], dtype="float64")
        if len(names) != len(coef):
            raise UnsupportedModelError(f"expected {len(coef)} transformed columns, got {len(names)}")
        groups = {b.name: list(b.columns) for b in self.blocks}
        positions = feature_positions(names, groups, schema.feature_names)
        self.intercept, self.n_features = float(model.intercept_[0]), len(schema.feature_names)
        self.numbers: list[dict[str, Any]] = []
        self.categories: list[tuple[str, int, dict[Any, float], float, float]] = []
        start = 0
        for block in self.blocks:
            width = sum(1 for n in names if n.startswith(f"{block.name}__"))
            cols = np.arange(start, start + width)
            start += width
            if block.kind == "linear_numbers":
                self.numbers.append(self._numbers(block, coef[cols], positions[cols]))
            else:
                self._categories(block, coef[cols], positions[cols], schema)
        if start != len(names):
            raise UnsupportedModelError("expected the transformed columns grouped by transformer")

    def _numbers(self, block: Any, coef: np.ndarray, positions: np.ndarray) -> dict[str, Any]:
        impute, shape = (step for _, step in block.transformer.steps)
        indicator = np.asarray(impute.indicator_.features_, dtype=np.int64) if impute.indicator_ is not None \
            else np.zeros(0, np.int64)
        quantiles = np.asarray(shape.quantiles_, dtype="float64")
        references = np.asarray(shape.references_, dtype="float64")
        if quantiles.shape[1] != len(block.columns) + len(indicator):
            raise UnsupportedModelError("linear numbers: unexpected quantile table")
        return {"columns": list(block.columns), "statistics": np.asarray(impute.statistics_, dtype="float64"),
                "indicator": indicator, "quantiles": quantiles, "references": references,
                "neg_quantiles": np.ascontiguousarray(-quantiles[::-1]),
                "neg_references": np.ascontiguousarray(-references[::-1]),
                "clip": (float(stats.norm.ppf(BOUNDS_THRESHOLD - np.spacing(1))),
                         float(stats.norm.ppf(1 - (BOUNDS_THRESHOLD - np.spacing(1))))),
                "coef": coef, "positions": positions}

    def _categories(self, block: Any, coef: np.ndarray, positions: np.ndarray, schema: TableSchema) -> None:
        features = schema.feature_names
        for feature in block.columns:
            own = positions == features.index(feature)
            known, unseen, missing = category_lookup(block.transformer.transform, block.columns, feature,
                                                     block.transformer.steps[-1][1].categories_[
                                                         list(block.columns).index(feature)])
            block_cols = np.flatnonzero(own)
            lookup = {k: float(v[block_cols] @ coef[block_cols]) for k, v in known.items()}
            self.categories.append((feature, features.index(feature), lookup,
                                    float(unseen[block_cols] @ coef[block_cols]),
                                    float(missing[block_cols] @ coef[block_cols])))

    def run(self, batch: Batch, explain: bool) -> MemberOutput:
        n = batch.n
        margins = np.zeros((n, self.n_features) if explain else (0, 0))
        total = np.zeros(n)
        for part in self.numbers:
            columns = np.array([batch.numeric_position[c] for c in part["columns"]], np.int64)
            uniform = kernels.linear_uniform(batch.numeric, columns, part["statistics"], part["indicator"],
                                             part["quantiles"], part["references"], part["neg_quantiles"],
                                             part["neg_references"])
            low, high = part["clip"]
            kernels.linear_margins(ndtri(uniform), low, high, part["coef"], part["positions"], total, margins,
                                   explain)
        for feature, position, lookup, unseen, missing in self.categories:
            value = batch.encode(feature, lookup, unseen, missing)
            total += value
            if explain:
                margins[:, position] += value
        proba = expit(self.intercept + total)
        if not explain:
            return MemberOutput(proba)
        p0, values = to_probability_units(np.full(n, self.intercept), margins, expit)
        return MemberOutput(proba, p0, values)
