"""Compiled CatBoost members: CatBoost computes each row's leaf in every oblivious tree; raw scores and
SHAP values (CatBoost's "Regular" values) are sums of per-leaf values and per-leaf SHAP tables."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from catboost import CatBoostClassifier, FeaturesData, Pool
from scipy.special import expit
from sklearn.preprocessing import FunctionTransformer

from leadscore.core.exceptions import UnsupportedModelError
from leadscore.data.schema import TableSchema
from leadscore.modeling.catboost_model import MISSING_CATEGORY, _category_text
from leadscore.scoring.fastpath import kernels
from leadscore.scoring.fastpath.inputs import (
    SMALL,
    Batch,
    MemberOutput,
    TreeInput,
    is_passthrough,
    pipeline_steps,
    probability_units,
    threads,
)

SPLITS = ("FloatFeature", "OnlineCtr", "OneHotFeature")


def _catboost_json(model: CatBoostClassifier) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.json"
        model.save_model(str(path), format="json")
        return json.loads(path.read_text())


def _split_classes(spec: dict[str, Any]) -> tuple[list[tuple[int, ...]], list[list[int]]]:
    """Each tree's per-level combination class (the sorted flat features of the split, as CatBoost's SHAP
    groups them: a CTR counts for its categorical features only) and its level order."""
    info = spec["features_info"]
    floats = info.get("float_features", [])
    cats = info.get("categorical_features", [])
    owners: list[tuple[int, ...]] = []
    for f in floats:
        owners += [(int(f["flat_feature_index"]),)] * len(f.get("borders", []))
    for c in cats:
        owners += [(int(c["flat_feature_index"]),)] * len(c.get("values", []))
    ctr_borders: list[list[float]] = []
    for ctr in info.get("ctrs", []):
        flat = tuple(sorted(int(cats[e["cat_feature_index"]]["flat_feature_index"]) for e in ctr["elements"]
                            if e["combination_element"] == "cat_feature_value"))
        owners += [flat] * len(ctr["borders"])
        ctr_borders += [ctr["borders"]] * len(ctr["borders"])
    first_ctr = len(owners) - len(ctr_borders)
    classes: list[tuple[int, ...]] = []
    levels: list[list[int]] = []
    for tree in spec["oblivious_trees"]:
        level = []
        for split in tree["splits"] or []:  # None: a tree of depth 0
            index = int(split["split_index"])
            if split["split_type"] == "OnlineCtr" and (
                    index < first_ctr or float(split["border"]) not in ctr_borders[index - first_ctr]):
                raise UnsupportedModelError("CatBoost: could not place a CTR split")
            if split["split_type"] not in SPLITS or index >= len(owners):
                raise UnsupportedModelError(f"CatBoost: unsupported split {split['split_type']}")
            if owners[index] not in classes:
                classes.append(owners[index])
            level.append(classes.index(owners[index]))
        levels.append(level)
    return classes, levels


class CatBoostMember:
    """A numbers-passthrough + category-text preprocessor and CatBoost: CatBoost computes each row's leaf
    in every tree; raw score and SHAP values are sums of per-leaf values and per-leaf SHAP tables."""

    def __init__(self, member: Any, schema: TableSchema) -> None:
        steps, model = pipeline_steps(member)
        if len(steps) != 1 or not isinstance(model, CatBoostClassifier) or list(model.classes_) != [0, 1]:
            raise UnsupportedModelError("expected a CatBoost preprocessor and a binary CatBoostClassifier")
        self.input = TreeInput(steps[0], schema, {
            "numbers": is_passthrough,
            "text": lambda t: isinstance(t, FunctionTransformer) and t.func is _category_text})
        kinds = [b.kind for b in self.input.blocks]
        self.n_numbers = sum(len(b.columns) for b in self.input.blocks if b.kind == "numbers")
        text_positions = list(range(self.n_numbers, self.input.width))
        if kinds not in (["numbers", "text"], ["numbers"], ["text"]) \
                or list(model.get_cat_feature_indices()) != text_positions:
            raise UnsupportedModelError("CatBoost: expected numbers first, then the categories")
        self.model, self.n_features = model, len(schema.feature_names)
        spec = _catboost_json(model)
        scale, bias = spec.get("scale_and_bias", [1.0, [0.0]])
        self.scale, self.bias = float(scale), float(np.ravel(bias)[0])
        self._build(spec)

    def _build(self, spec: dict[str, Any]) -> None:
        classes, levels = _split_classes(spec)
        leaf_start, leaf_values, table_start, table, feature_start, features = [0], [], [0], [], [0], []
        self.expected = 0.0
        for tree, level in zip(spec["oblivious_trees"], levels, strict=True):
            values = np.asarray(tree["leaf_values"], dtype="float64")
            weights = np.asarray(tree["leaf_weights"], dtype="float64")
            if len(values) != 1 << len(level) or np.any(values[weights == 0] != 0):
                raise UnsupportedModelError("CatBoost: expected one value per leaf and 0 on empty leaves")
            mean = 0.0
            for v, w in zip(values, weights, strict=True):
                mean += v * w
            total = weights.copy()
            while len(total) > 1:  # CatBoost's subtree weights: sibling pairs up to the root
                total = total[0::2] + total[1::2]
            self.expected += mean / total[0]
            leaf_values.extend(values.tolist())
            leaf_start.append(len(leaf_values))
            unique = sorted(set(level))
            slots = np.array([unique.index(c) for c in level], np.int64)
            phi = kernels.oblivious_shap(values, weights, slots, len(unique))
            flat = sorted({f for c in unique for f in classes[c]})
            per_flat = np.zeros((len(values), len(flat)))
            for i, c in enumerate(unique):
                for f in classes[c]:
                    per_flat[:, flat.index(f)] += phi[:, i] / len(classes[c])
            table.extend(per_flat.ravel().tolist())
            table_start.append(len(table))
            features.extend(flat)
            feature_start.append(len(features))
        self.trees = (np.array(leaf_start[:-1], np.int64), np.array(leaf_values, np.float64),
                      np.array(table_start[:-1], np.int64), np.array(table, np.float64),
                      np.array(feature_start, np.int64), np.array(features, np.int64))

    def pool(self, batch: Batch) -> Pool:
        """The rows as CatBoost reads them: numbers (as float32), then categories as text."""
        blocks = self.input.blocks
        numbers = [batch.numeric_position[f] for b in blocks if b.kind == "numbers" for f in b.columns]
        text = [batch.map_categories(f, str, MISSING_CATEGORY) for b in blocks if b.kind == "text"
                for f in b.columns]  # models._category_text: str(value), "(missing)" for a missing one
        if batch.n <= SMALL:  # a few rows: one object array is the quickest to hand over
            rows = np.empty((batch.n, len(numbers) + len(text)), dtype=object)
            rows[:, :len(numbers)] = batch.numeric[:, numbers]
            for j, values in enumerate(text):
                rows[:, len(numbers) + j] = values
            return Pool(rows, cat_features=list(range(len(numbers), len(numbers) + len(text))))
        return Pool(FeaturesData(
            num_feature_data=batch.numeric[:, numbers].astype(np.float32) if numbers else None,
            cat_feature_data=np.column_stack(text) if text else None))

    def run(self, batch: Batch, explain: bool) -> MemberOutput:
        pool, count = self.pool(batch), threads(batch.n)
        if not explain:  # CatBoost's own sum of the trees, as predict_proba uses
            raw = np.asarray(self.model.predict(pool, prediction_type="RawFormulaVal", thread_count=count))
            return MemberOutput(expit(raw.astype("float64")))
        compute = getattr(self.model, "_base_calc_leaf_indexes", None)  # quicker than calc_leaf_indexes
        leaves = np.asarray(compute(pool, 0, self.model.tree_count_, count, False) if compute is not None
                            else self.model.calc_leaf_indexes(pool, thread_count=count))
        raw, shap = kernels.oblivious_sums(leaves, *self.trees, self.input.width, True)
        proba = expit(raw * self.scale + self.bias)  # the same sum, tree by tree (checked at compile time)
        base = np.full(batch.n, self.expected * self.scale + self.bias)
        p0, values = probability_units(base, shap * self.scale, self.input, self.n_features)
        return MemberOutput(proba, p0, values)
