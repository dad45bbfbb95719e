"""Compiled LightGBM members: binned rows through vectorised tree evaluation for the raw score, and
path-dependent TreeSHAP (LightGBM's values) from per-leaf closed forms, tables and a per-tree memo."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from lightgbm import LGBMClassifier
from scipy.special import expit

from leadscore.core.exceptions import UnsupportedModelError
from leadscore.data.schema import TableSchema
from leadscore.scoring.fastpath import kernels
from leadscore.scoring.fastpath.inputs import (
    Batch,
    MemberOutput,
    TreeInput,
    pipeline_steps,
    probability_units,
    threads,
)

MAX_TABLE = 32_000_000  # TreeSHAP table entries (8 bytes each) a LightGBM member may use
MEMO_SLOTS = 2048  # per tree: contributions of up to 1024 decision patterns are kept
TABLE_ROWS = 64  # from this many rows TreeSHAP reads tables (fewer: computes the same values directly)


def _parse_lightgbm(text: str) -> tuple[int, list[dict[str, str]]]:
    """(number of features, per tree its ``key=value`` fields) of a LightGBM model string."""
    header, _, body = text.partition("\nTree=")
    fields = dict(line.split("=", 1) for line in header.splitlines() if "=" in line)
    if (fields.get("num_class") != "1" or fields.get("num_tree_per_iteration") != "1"
            or fields.get("objective", "").split() != ["binary", "sigmoid:1"] or "average_output" in header):
        raise UnsupportedModelError("LightGBM: expected a binary model with sigmoid:1 and summed trees")
    trees = []
    for chunk in ("Tree=" + body).split("\n\n"):
        chunk = chunk.strip()
        if not chunk:
            continue
        if not chunk.startswith("Tree="):
            break
        tree = dict(line.split("=", 1) for line in chunk.splitlines()[1:] if "=" in line)
        if tree.get("is_linear", "0") != "0":
            raise UnsupportedModelError("LightGBM: linear trees are not supported")
        trees.append(tree)
    return int(fields["max_feature_idx"]) + 1, trees


def _numbers(tree: dict[str, str], key: str, dtype: Any) -> np.ndarray:
    return np.array(tree[key].split(), dtype=dtype) if tree.get(key) else np.zeros(0, dtype=dtype)


@dataclass
class _Leaf:
    value: float
    features: list[int]
    zero: list[float]
    steps: list[tuple[int, int, int]]  # (node, went left, feature slot)


def _leaves(tree: dict[str, str]) -> list[_Leaf]:
    """Each leaf's path: unique features in order, their zero fractions (cover shares) and the steps."""
    feature, left, right, leaf_count, internal_count = (
        _numbers(tree, k, np.int64) for k in ("split_feature", "left_child", "right_child", "leaf_count",
                                              "internal_count"))
    values = _numbers(tree, "leaf_value", np.float64)

    def count(child: int) -> float:
        return float(internal_count[child] if child >= 0 else leaf_count[~child])

    leaves: dict[int, _Leaf] = {}
    stack: list[tuple[int, list[tuple[int, int]]]] = [(0, [])]
    while stack:
        node, path = stack.pop()
        if node < 0:
            leaf = _Leaf(float(values[~node]), [], [], [])
            for step, went_left in path:
                f = int(feature[step])
                if f not in leaf.features:
                    leaf.features.append(f)
                    leaf.zero.append(1.0)
                slot = leaf.features.index(f)
                child = int(left[step] if went_left else right[step])
                leaf.zero[slot] = count(child) / float(internal_count[step]) * leaf.zero[slot]
                leaf.steps.append((step, went_left, slot))
            leaves[~node] = leaf
            continue
        stack.append((int(right[node]), [*path, (node, 0)]))
        stack.append((int(left[node]), [*path, (node, 1)]))
    return [leaves[i] for i in range(len(leaves))]


def _in_order(tree: dict[str, str]) -> tuple[list[int], list[int]]:
    """(leaves left to right, per internal node the bit mask of its left subtree's leaf positions)."""
    left, right = _numbers(tree, "left_child", np.int64), _numbers(tree, "right_child", np.int64)
    order: list[int] = []
    masks = [0] * len(left)

    def visit(node: int) -> tuple[int, int]:  # (first position, last position + 1) of the subtree
        if node < 0:
            order.append(~node)
            return len(order) - 1, len(order)
        first, middle = visit(int(left[node]))
        masks[node] = ((1 << (middle - first)) - 1) << first if middle - first < 64 else ~0 & (2**64 - 1)
        _, last = visit(int(right[node]))
        return first, last

    visit(0)
    return order, [m & (2**64 - 1) for m in masks]


class LightGBMMember:
    """A ``tree`` preprocessor + LightGBM pipeline: its own tree walk for the raw score, and TreeSHAP from
    per-leaf tables (:func:`kernels.leaf_tables`), LightGBM's path-dependent values in closed form."""

    def __init__(self, member: Any, schema: TableSchema) -> None:
        steps, model = pipeline_steps(member)
        if len(steps) != 1 or not isinstance(model, LGBMClassifier) or list(model.classes_) != [0, 1]:
            raise UnsupportedModelError("expected a tree preprocessor and a binary LGBMClassifier")
        self.input = TreeInput(steps[0], schema)
        self.n_features = len(schema.feature_names)
        self.booster = model.booster_
        n_in, trees = _parse_lightgbm(model.booster_.model_to_string())
        if n_in != self.input.width:
            raise UnsupportedModelError(f"LightGBM: expected {self.input.width} inputs, got {n_in}")
        self._build(trees)

    def _build(self, trees: list[dict[str, str]]) -> None:
        node_start, leaf_start, tree_leaves, cat_offset = [0], [0], [0], 0
        left_leaves: list[int] = []
        pos_leaf: list[int] = []
        pos_start = [0]
        self.widest = max(int(tree["num_leaves"]) for tree in trees)
        nodes: dict[str, list[Any]] = {k: [] for k in ("feature", "kind", "threshold", "cat_start", "cat_len",
                                                       "left", "right")}
        leaf_values: list[float] = []
        all_leaves: list[_Leaf] = []
        cat_bits: list[int] = []
        self.expected = 0.0
        for tree in trees:
            values = _numbers(tree, "leaf_value", np.float64)
            leaf_values.extend(values.tolist())
            leaf_start.append(len(leaf_values))
            if int(tree["num_leaves"]) == 1:
                self.expected += float(values[0])
                node_start.append(node_start[-1])
                tree_leaves.append(tree_leaves[-1])
                pos_leaf.append(leaf_start[-2])
                pos_start.append(len(pos_leaf))
                continue
            threshold = _numbers(tree, "threshold", np.float64)
            kinds = _numbers(tree, "decision_type", np.int64)
            bounds = _numbers(tree, "cat_boundaries", np.int64)
            for k in range(len(threshold)):
                is_cat = bool(kinds[k] & 1)
                index = int(threshold[k]) if is_cat else 0
                nodes["cat_start"].append(cat_offset + int(bounds[index]) if is_cat else 0)
                nodes["cat_len"].append(int(bounds[index + 1] - bounds[index]) if is_cat else 0)
            cat_bits.extend(_numbers(tree, "cat_threshold", np.uint32).tolist())
            cat_offset = len(cat_bits)
            nodes["feature"].extend(_numbers(tree, "split_feature", np.int64).tolist())
            nodes["kind"].extend(kinds.tolist())
            nodes["threshold"].extend(threshold.tolist())
            nodes["left"].extend(_numbers(tree, "left_child", np.int64).tolist())
            nodes["right"].extend(_numbers(tree, "right_child", np.int64).tolist())
            node_start.append(len(nodes["feature"]))
            counts = _numbers(tree, "leaf_count", np.int64)
            total = float(_numbers(tree, "internal_count", np.int64)[0])
            expected = 0.0
            for i in range(len(values)):  # LightGBM's Tree::ExpectedValue
                expected += (counts[i] / total) * values[i]
            self.expected += expected
            all_leaves.extend(_leaves(tree))
            tree_leaves.append(len(all_leaves))
            order, masks = _in_order(tree)
            left_leaves.extend(masks)
            pos_leaf.extend(leaf_start[-2] + leaf for leaf in order)
            pos_start.append(len(pos_leaf))
        self.tree = (np.array(node_start, np.int64), np.array(nodes["feature"], np.int64),
                     np.array(nodes["kind"], np.int64), np.array(nodes["threshold"], np.float64),
                     np.array(nodes["cat_start"], np.int64), np.array(nodes["cat_len"], np.int64),
                     np.array(cat_bits, np.uint32))
        self.children = (np.array(nodes["left"], np.int64), np.array(nodes["right"], np.int64))
        self.leaf_values = (np.array(leaf_start, np.int64), np.array(leaf_values, np.float64))
        self.quick = (np.array(left_leaves, np.uint64), np.array(pos_start, np.int64),
                      np.array(pos_leaf, np.int64), self.leaf_values[1])
        self._shap_tables(all_leaves, np.array(tree_leaves, np.int64))
        self._bin_layout()

    def _shap_tables(self, leaves: list[_Leaf], tree_leaves: np.ndarray) -> None:
        depth = np.array([len(leaf.features) for leaf in leaves], np.int64)
        sizes = (2 ** depth) * depth
        use_table = int(sizes.sum()) <= MAX_TABLE
        if not use_table:
            sizes[:] = 0
        table_start = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        feature_start = np.concatenate([[0], np.cumsum(depth)]).astype(np.int64)
        mask = np.zeros(int(depth.sum()), np.uint64)
        want = np.zeros(int(depth.sum()), np.uint64)
        local = np.zeros(int(depth.sum()), np.int64)
        tree_features: list[int] = []
        tree_feature_start = [0]
        for t in range(len(tree_leaves) - 1):
            own: list[int] = []
            for g in range(tree_leaves[t], tree_leaves[t + 1]):
                for slot, f in enumerate(leaves[g].features):
                    if f not in own:
                        own.append(f)
                    local[feature_start[g] + slot] = own.index(f)
                for node, went_left, slot in leaves[g].steps:
                    if node < 64:
                        mask[feature_start[g] + slot] |= np.uint64(1 << node)
                        want[feature_start[g] + slot] |= np.uint64(went_left << node)
            tree_features.extend(own)
            tree_feature_start.append(len(tree_features))
        zero = np.array([z for leaf in leaves for z in leaf.zero], np.float64)
        value = np.array([leaf.value for leaf in leaves], np.float64)
        weights = kernels.shapley_weights(int(depth.max(initial=1)))
        table = np.zeros(0)
        if self.widest <= 64 and use_table:
            size = int(sizes.sum())
            table = kernels.leaf_tables(value, depth, feature_start, zero, table_start, size, weights)
        self.use_table = use_table
        self.shap = (tree_leaves, depth, feature_start, local, mask, want, zero, value, weights, table_start,
                     table)
        widths = np.diff(tree_feature_start)
        trees = len(widths)
        self.memo = (np.array(tree_feature_start, np.int64), np.array(tree_features, np.int64),
                     np.zeros((trees, MEMO_SLOTS), np.uint64), np.zeros((trees, MEMO_SLOTS), np.int32),
                     np.zeros(len(widths), np.int64),
                     np.concatenate([[0], np.cumsum(widths * (MEMO_SLOTS // 2))[:-1]]).astype(np.int64),
                     np.zeros(int(widths.sum()) * (MEMO_SLOTS // 2)), kernels.debruijn_table())
        self.lock = threading.Lock()

    def probe_values(self) -> dict[str, list[float]]:
        """Each numeric split threshold and the next float above it, by prepared feature."""
        features = [f for b in self.input.blocks for f in b.columns]
        node_feature, kind, threshold = self.tree[1], self.tree[2], self.tree[3]
        out: dict[str, list[float]] = {}
        for f, k, t in zip(node_feature.tolist(), kind.tolist(), threshold.tolist(), strict=True):
            if not k & 1 and self.input.blocks_kind[f] == "numbers":
                out.setdefault(features[f], []).extend([t, float(np.nextafter(t, np.inf))])
        return out

    def _bin_layout(self) -> None:
        """Per-feature sorted thresholds and per-node bin limits for :func:`kernels.lgb_quick`; the model
        is walked instead when a node treats zero as missing or a category code above 63 can go left."""
        node_start, feature, kind, threshold, cat_start, cat_len, cat_bits = self.tree
        categorical = (kind & 1).astype(bool)
        self.binned = self.widest <= 64 and not np.any(((kind >> 2) & 3)[~categorical] == 1) \
            and not np.any(cat_len[categorical] > 2) \
            and not set(feature[categorical].tolist()) & set(feature[~categorical].tolist())
        if not self.binned:
            return
        width = self.input.width
        is_categorical = np.zeros(width, np.bool_)
        is_categorical[feature[categorical]] = True
        cuts = [np.unique(threshold[(feature == f) & ~categorical]) for f in range(width)]
        bin_start = np.concatenate([[0], np.cumsum([len(c) for c in cuts])]).astype(np.int64)
        node_bin = np.zeros(len(feature), np.int32)
        nan_left = np.zeros(len(feature), np.uint64)
        category_mask = np.zeros(len(feature), np.uint64)
        for k in range(len(feature)):
            if categorical[k]:
                words = cat_bits[cat_start[k]: cat_start[k] + cat_len[k]].astype(np.uint64)
                category_mask[k] = words[0] | (words[1] << np.uint64(32)) if len(words) > 1 \
                    else (words[0] if len(words) else np.uint64(0))
            else:
                node_bin[k] = np.searchsorted(cuts[feature[k]], threshold[k])
                missing_left = bool(kind[k] & 2) if (kind[k] >> 2) & 3 == 2 else threshold[k] >= 0.0
                nan_left[k] = np.uint64(missing_left)
        self.bin_layout = (bin_start, np.concatenate(cuts).astype(np.float64) if cuts else np.zeros(0),
                           is_categorical)
        self.nodes = (node_start, feature, node_bin, nan_left, category_mask, categorical.astype(np.uint8))

    def scores(self, z: np.ndarray, explain: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """(raw scores, contributions per transformed column when ``explain``) for input matrix ``z``."""
        if not self.binned:  # walk the trees; LightGBM computes the contributions
            raw = kernels.lgb_raw(z, *self.tree, *self.children, *self.leaf_values)
            if not explain:
                return raw, None
            contrib = self.booster.predict(z, pred_contrib=True, num_threads=threads(len(z)))
            return raw, np.asarray(contrib, dtype="float64")[:, :-1]
        bins = kernels.lgb_bins(z, *self.bin_layout)
        if not explain:
            raw, _ = kernels.lgb_quick(bins, False, 0, *self.nodes, *self.quick, *self.shap, False,
                                       *self.memo)
            return raw, None
        with self.lock:  # the kernel updates the per-tree memo
            return kernels.lgb_quick(bins, True, self.input.width, *self.nodes, *self.quick, *self.shap,
                                     self.use_table and len(z) >= TABLE_ROWS, *self.memo)

    def run(self, batch: Batch, explain: bool) -> MemberOutput:
        raw, contrib = self.scores(self.input.matrix(batch), explain)
        proba = expit(raw)
        if contrib is None:
            return MemberOutput(proba)
        p0, values = probability_units(np.full(batch.n, self.expected), contrib, self.input, self.n_features)
        return MemberOutput(proba, p0, values)
