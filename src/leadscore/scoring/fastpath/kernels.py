"""Compiled loops of the fast path (numba, single-threaded, no GIL held).

Each kernel follows its library's arithmetic: LightGBM's decision rules (``tree.h``), NumPy's ``interp``
and the path-dependent TreeSHAP value function of LightGBM and CatBoost. Callers verify every compiled
model against the library on sample rows before using it.

This module and ``lgb_quick`` are longer than the package's usual limits on purpose: numba compiles each
kernel as one unit, and splitting a hot loop into helper calls (or the module into several with their
own caches) costs per-row call overhead and compile time, the very thing the fast path exists to avoid.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

KZERO = 1.0000000180025095e-35  # LightGBM's kZeroThreshold (1e-35f as a double)
BLOCK = 256  # rows per block in lgb_contrib


@njit(cache=True, nogil=True, inline="always")
def _interp(x: float, xp: np.ndarray, fp: np.ndarray) -> float:  # pragma: no cover - compiled
    """``np.interp(x, xp, fp)`` for one finite ``x`` (the same branches and arithmetic as NumPy's C code,
    which finds the last index ``j`` with ``xp[j] <= x``)."""
    n = xp.shape[0]
    if x < xp[0]:
        return fp[0]
    if x > xp[n - 1]:
        return fp[n - 1]
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) >> 1
        if x >= xp[mid]:
            lo = mid + 1
        else:
            hi = mid
    j = lo - 1
    if j == n - 1 or xp[j] == x:
        return fp[j]
    slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j])
    res = slope * (x - xp[j]) + fp[j]
    if math.isnan(res):
        res = slope * (x - xp[j + 1]) + fp[j + 1]
        if math.isnan(res) and fp[j] == fp[j + 1]:
            res = fp[j]
    return res


@njit(cache=True, nogil=True)
def quantile_uniform(x: np.ndarray, quantiles: np.ndarray, references: np.ndarray,
                     neg_quantiles: np.ndarray, neg_references: np.ndarray) -> np.ndarray:  # pragma: no cover
    """QuantileTransformer's forward map to [0, 1] (before the normal ppf) of ``x`` (n, m), column by
    column: the mean of ``np.interp(x, q, r)`` and ``-np.interp(-x, -q[::-1], -r[::-1])``, then the bounds.
    ``neg_*`` are ``-quantiles[::-1]`` and ``-references[::-1]``."""
    n, m = x.shape
    nq = quantiles.shape[0]
    out = np.empty((n, m))
    for c in range(m):
        q, neg_q = quantiles[:, c], neg_quantiles[:, c]
        low, high = q[0], q[nq - 1]
        for i in range(n):
            v = x[i, c]
            if math.isnan(v):
                out[i, c] = v
                continue
            u = 0.5 * (_interp(v, q, references) - _interp(-v, neg_q, neg_references))
            if v + 1e-7 > high:
                u = 1.0
            if v - 1e-7 < low:
                u = 0.0
            out[i, c] = u
    return out


@njit(cache=True, nogil=True, inline="always")
def _goes_left(fval: float, kind: int, threshold: float, cat_start: int, cat_len: int,
               cat_bits: np.ndarray) -> bool:  # pragma: no cover - compiled
    """LightGBM's Decision(): ``kind`` is its decision_type byte (bit 0 categorical, bit 1 default left,
    bits 2-3 missing type: 1 zero, 2 NaN)."""
    if kind & 1:  # categorical: NaN and negative values go right (the cast to int is negative)
        if math.isnan(fval) or fval >= 2147483648.0 or fval <= -2147483649.0:
            return False
        code = int(fval)
        if code < 0 or code // 32 >= cat_len:
            return False
        return ((cat_bits[cat_start + code // 32] >> np.uint32(code % 32)) & np.uint32(1)) == 1
    missing = (kind >> 2) & 3
    nan = fval != fval
    value = 0.0 if nan and missing != 2 else fval
    default = (missing == 1 and -KZERO <= value <= KZERO) or (missing == 2 and nan)
    return (kind & 2) != 0 if default else value <= threshold


@njit(cache=True, nogil=True, inline="always")
def _lowest_bit(mask: np.uint64, debruijn: np.ndarray) -> int:  # pragma: no cover - compiled
    """Index of the lowest set bit of a non-zero ``mask`` (de Bruijn multiplication)."""
    low = mask & (~mask + np.uint64(1))
    return debruijn[(low * np.uint64(0x03F79D71B4CB0A89)) >> np.uint64(58)]


def debruijn_table() -> np.ndarray:
    """The lookup table of :func:`_lowest_bit`."""
    table = np.zeros(64, dtype=np.int64)
    for bit in range(64):
        table[((1 << bit) * 0x03F79D71B4CB0A89 % (1 << 64)) >> 58] = bit
    return table


MISSING_BIN = 1 << 30  # the bin of a missing number in lgb_bins


@njit(cache=True, nogil=True)
def lgb_bins(x: np.ndarray, bin_start: np.ndarray, thresholds: np.ndarray,
             categorical: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """Rows ``x`` (n, m) as bins, transposed (m, n): for a numeric feature the number of its split
    thresholds below the value (``x <= thresholds[j]`` exactly when ``bin <= j``; MISSING_BIN for NaN),
    for a categorical one the category code LightGBM reads (``int(x)``, -1 for NaN and codes below 0)."""
    n, m = x.shape
    out = np.empty((m, n), np.int32)
    for f in range(m):
        first, last = bin_start[f], bin_start[f + 1]
        for i in range(n):
            v = x[i, f]
            if categorical[f]:
                out[f, i] = np.int32(int(v)) if v > -1.0 and v < 2147483648.0 else np.int32(-1)
            elif v != v:
                out[f, i] = MISSING_BIN
            else:
                lo, hi = first, last
                while lo < hi:
                    mid = (lo + hi) >> 1
                    if thresholds[mid] < v:
                        lo = mid + 1
                    else:
                        hi = mid
                out[f, i] = lo - first
    return out


@njit(cache=True, nogil=True)
def lgb_quick(bins: np.ndarray, explain: bool, n_out: int, node_start: np.ndarray, feature: np.ndarray,
              node_bin: np.ndarray, nan_left: np.ndarray, category_mask: np.ndarray, categorical: np.ndarray,
              left_leaves: np.ndarray, pos_start: np.ndarray, pos_leaf: np.ndarray, leaf_value: np.ndarray,
              tree_leaves: np.ndarray, leaf_depth: np.ndarray, leaf_feature_start: np.ndarray,
              leaf_local: np.ndarray, leaf_mask: np.ndarray, leaf_want: np.ndarray, zero: np.ndarray,
              values: np.ndarray, weights: np.ndarray, leaf_table: np.ndarray, table: np.ndarray,
              use_table: bool, tree_feature_start: np.ndarray, tree_features: np.ndarray,
              memo_keys: np.ndarray, memo_slot: np.ndarray, memo_count: np.ndarray, memo_start: np.ndarray,
              memo_values: np.ndarray,
              debruijn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """Raw scores (n,) and, when ``explain``, TreeSHAP contributions (n, n_out) of a LightGBM model whose
    trees have at most 64 leaves, from binned rows (:func:`lgb_bins`).

    Node by node, for a block of rows at once: a numeric node sends a row left when its bin is at most
    the node's (a missing value goes where ``nan_left`` says), a categorical node when its code is in the
    node's ``category_mask``. The leaf a row reaches is the leftmost one no right turn excludes (each
    node's ``left_leaves``: in-order positions of its left subtree's leaves; ``pos_leaf`` maps them to
    leaves). For the contributions the row's decisions form a bit mask (bit k: left at node k); a leaf's
    path feature j agrees with the row when the row goes the path's way at every node of
    ``leaf_mask[j]`` (``leaf_want[j]``: where the path goes left), and :func:`_leaf_row` of that
    agreement pattern (read from ``table`` when ``use_table``) is the leaf's share. A tree's
    contributions, summed leaf by leaf, depend on the decisions only, so they are kept per tree in a hash
    table (``memo_*``, mutated: callers hold a lock) and reused for rows that decide alike. Trees are
    added in order, as LightGBM does.
    """
    n = bins.shape[1]
    trees = node_start.shape[0] - 1
    raw = np.zeros(n)
    out = np.zeros((n, n_out if explain else 0))
    width = 1
    for t in range(trees):
        width = max(width, tree_feature_start[t + 1] - tree_feature_start[t])
    phi = np.zeros(width)
    poly = np.zeros(weights.shape[0] + 1)
    row_values = np.zeros(weights.shape[0])
    capacity = memo_keys.shape[1]
    shift = np.uint64(64 - int(np.log2(capacity)))
    entries = capacity // 2
    reach = np.empty(BLOCK, np.uint64)
    decisions = np.empty(BLOCK, np.uint64)
    one = np.uint64(1)
    for start in range(0, n, BLOCK):
        stop = min(start + BLOCK, n)
        size = stop - start
        for t in range(trees):
            base = pos_start[t]
            if node_start[t + 1] == node_start[t]:  # a single leaf
                for i in range(start, stop):
                    raw[i] += leaf_value[pos_leaf[base]]
                continue
            reach[:size] = ~np.uint64(0)
            decisions[:size] = 0
            for k in range(node_start[t], node_start[t + 1]):
                f = feature[k]
                excluded = left_leaves[k]
                bit = np.uint64(k - node_start[t])
                if categorical[k]:
                    mask = category_mask[k]
                    for i in range(size):
                        code = bins[f, start + i]
                        go = np.uint64((code >= 0) & (code < 64)) & ((mask >> np.uint64(code & 63)) & one)
                        reach[i] &= ~(excluded & (go - one))
                        decisions[i] |= go << bit
                else:
                    limit, missing = node_bin[k], nan_left[k]
                    for i in range(size):
                        b = bins[f, start + i]
                        go = np.uint64(b <= limit) | (np.uint64(b == MISSING_BIN) & missing)
                        reach[i] &= ~(excluded & (go - one))
                        decisions[i] |= go << bit
            for i in range(size):
                raw[start + i] += leaf_value[pos_leaf[base + _lowest_bit(reach[i], debruijn)]]
            if not explain:
                continue
            u = tree_feature_start[t + 1] - tree_feature_start[t]
            for i in range(size):
                bits = decisions[i]
                h = (bits * np.uint64(0x9E3779B97F4A7C15)) >> shift
                while memo_slot[t, h] != 0 and memo_keys[t, h] != bits:
                    h = (h + one) & np.uint64(capacity - 1)
                slot = memo_slot[t, h] - 1
                if slot < 0:
                    phi[:u] = 0.0
                    for g in range(tree_leaves[t], tree_leaves[t + 1]):
                        d = leaf_depth[g]
                        first = leaf_feature_start[g]
                        pattern = 0
                        for j in range(d):
                            pattern |= int(((bits ^ leaf_want[first + j]) & leaf_mask[first + j]) == 0) << j
                        if use_table:
                            offset = leaf_table[g] + pattern * d
                            for j in range(d):
                                phi[leaf_local[first + j]] += table[offset + j]
                        else:
                            _leaf_row(pattern, d, zero, first, values[g], weights, poly, row_values, 0)
                            for j in range(d):
                                phi[leaf_local[first + j]] += row_values[j]
                    if memo_count[t] < entries:
                        slot = memo_count[t]
                        memo_count[t] += 1
                        memo_values[memo_start[t] + slot * u: memo_start[t] + (slot + 1) * u] = phi[:u]
                        memo_keys[t, h] = bits
                        memo_slot[t, h] = slot + 1
                    for j in range(u):
                        out[start + i, tree_features[tree_feature_start[t] + j]] += phi[j]
                else:
                    offset = memo_start[t] + slot * u
                    for j in range(u):
                        out[start + i, tree_features[tree_feature_start[t] + j]] += memo_values[offset + j]
    return raw, out


@njit(cache=True, nogil=True)
def lgb_raw(x: np.ndarray, node_start: np.ndarray, feature: np.ndarray, kind: np.ndarray,
            threshold: np.ndarray, cat_start: np.ndarray, cat_len: np.ndarray, cat_bits: np.ndarray,
            left_child: np.ndarray, right_child: np.ndarray, leaf_start: np.ndarray,
            leaf_value: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """Raw scores (sum of leaf values, tree by tree) of a LightGBM model for rows ``x`` (n, features)."""
    n = x.shape[0]
    trees = node_start.shape[0] - 1
    out = np.zeros(n)
    for i in range(n):
        total = 0.0
        for t in range(trees):
            base = node_start[t]
            if node_start[t + 1] == base:  # a single leaf
                total += leaf_value[leaf_start[t]]
                continue
            node = 0
            while node >= 0:
                k = base + node
                if _goes_left(x[i, feature[k]], kind[k], threshold[k], cat_start[k], cat_len[k], cat_bits):
                    node = left_child[k]
                else:
                    node = right_child[k]
            total += leaf_value[leaf_start[t] + ~node]
        out[i] = total
    return out


def shapley_weights(depth: int) -> np.ndarray:
    """``w[d, s] = s! (d - s - 1)! / d!`` for paths of ``d <= depth`` features."""
    w = np.zeros((depth + 1, depth + 1))
    for d in range(1, depth + 1):
        for s in range(d):
            w[d, s] = math.factorial(s) * math.factorial(d - s - 1) / math.factorial(d)
    return w


@njit(cache=True, nogil=True)
def _leaf_row(pattern: int, d: int, z: np.ndarray, first: int, value: float, weights: np.ndarray,
              poly: np.ndarray, dest: np.ndarray, offset: int) -> None:  # pragma: no cover - compiled
    """One leaf's contributions to its ``d`` path features for one agreement ``pattern`` (bit j: the
    row agrees with the path on feature j), into ``dest[offset:offset + d]``.

    With zero fractions ``z_j`` (cover shares) and agreements ``o_j``, feature ``i`` gets ``value (o_i -
    z_i) sum_S |S|! (d-|S|-1)! / d! prod_{j in S} o_j prod_{j not in S, j != i} z_j`` over subsets ``S``
    of the other features: the leaf's term of path-dependent TreeSHAP (Lundberg et al. 2018) in closed
    form; the sum runs over the coefficients of ``prod_{j != i} (z_j + o_j t)``.
    """
    for i in range(d):
        o_i = (pattern >> i) & 1
        z_i = z[first + i]
        if o_i == z_i:
            dest[offset + i] = 0.0
            continue
        poly[0] = 1.0
        degree = 0
        for j in range(d):
            if j == i:
                continue
            z_j = z[first + j]
            o_j = (pattern >> j) & 1
            degree += 1
            poly[degree] = 0.0
            for p in range(degree, 0, -1):
                poly[p] = poly[p] * z_j + (poly[p - 1] if o_j else 0.0)
            poly[0] = poly[0] * z_j
        total = 0.0
        for s in range(d):
            total += weights[d, s] * poly[s]
        dest[offset + i] = value * (o_i - z_i) * total


@njit(cache=True)
def leaf_tables(leaf_value: np.ndarray, leaf_depth: np.ndarray, leaf_feature_start: np.ndarray,
                zero: np.ndarray, leaf_table: np.ndarray, size: int,
                weights: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """:func:`_leaf_row` of every leaf for every agreement pattern, leaf ``g`` at ``leaf_table[g]``."""
    table = np.zeros(size)
    poly = np.zeros(weights.shape[0] + 1)
    for g in range(leaf_value.shape[0]):
        d = leaf_depth[g]
        for pattern in range(1 << d):
            _leaf_row(pattern, d, zero, leaf_feature_start[g], leaf_value[g], weights, poly, table,
                      leaf_table[g] + pattern * d)
    return table


@njit(cache=True, nogil=True)
def oblivious_sums(leaves: np.ndarray, leaf_start: np.ndarray, leaf_value: np.ndarray,
                   table_start: np.ndarray, table: np.ndarray, feature_start: np.ndarray,
                   features: np.ndarray, n_out: int, explain: bool) -> tuple[np.ndarray, np.ndarray]:
    """Raw scores and (when ``explain``) SHAP values of oblivious trees from each row's leaf per tree
    (``leaves`` (n, trees)): tree ``t`` adds ``leaf_value[leaf_start[t] + leaf]`` and the row
    ``table[table_start[t] + leaf * m_t : ... + m_t]`` to its features ``features[feature_start[t]:]``.
    """  # pragma: no cover - compiled
    n, trees = leaves.shape
    raw = np.zeros(n)
    out = np.zeros((n, n_out if explain else 0))
    for i in range(n):
        total = 0.0
        for t in range(trees):
            leaf = leaves[i, t]
            total += leaf_value[leaf_start[t] + leaf]
            if explain:
                m = feature_start[t + 1] - feature_start[t]
                offset = table_start[t] + leaf * m
                for k in range(m):
                    out[i, features[feature_start[t] + k]] += table[offset + k]
        raw[i] = total
    return raw, out


@njit(cache=True)
def oblivious_shap(values: np.ndarray, weights: np.ndarray, slot: np.ndarray,
                   n_slots: int) -> np.ndarray:  # pragma: no cover - compiled
    """(leaves, n_slots) path-dependent TreeSHAP values of one oblivious tree, each level ``bit`` (the
    split of leaf-index bit ``bit``; the root is the highest bit) belonging to feature class
    ``slot[bit]``. E[f | x_S] descends from the root: a level whose class is in S follows the row's bit,
    another averages both children by training weight (an empty subtree counts 0)."""
    depth = slot.shape[0]
    leaves = 1 << depth
    expect = np.empty((1 << n_slots, leaves))
    e = np.empty(leaves)
    w = np.empty(leaves)
    for s in range(1 << n_slots):
        for row in range(leaves):
            e[:] = values
            w[:] = weights
            width = leaves
            for bit in range(depth):
                width >>= 1
                follow = (s >> slot[bit]) & 1
                right = (row >> bit) & 1
                for j in range(width):
                    w_low, w_high = w[2 * j], w[2 * j + 1]
                    total = w_low + w_high
                    if follow:
                        e[j] = e[2 * j + 1] if right else e[2 * j]
                    elif total > 0:
                        e[j] = (w_low * e[2 * j] + w_high * e[2 * j + 1]) / total
                    else:
                        e[j] = 0.0
                    w[j] = total
            expect[s, row] = e[0]
    phi = np.zeros((leaves, n_slots))
    fact = np.ones(n_slots + 1)
    for k in range(2, n_slots + 1):
        fact[k] = fact[k - 1] * k
    for i in range(n_slots):
        for s in range(1 << n_slots):
            if (s >> i) & 1:
                continue
            size = 0
            for b in range(n_slots):
                size += (s >> b) & 1
            weight = fact[size] * fact[n_slots - size - 1] / fact[n_slots]
            for row in range(leaves):
                phi[row, i] += weight * (expect[s | (1 << i), row] - expect[s, row])
    return phi


@njit(cache=True, nogil=True)
def linear_uniform(numeric: np.ndarray, columns: np.ndarray, statistics: np.ndarray, indicator: np.ndarray,
                   quantiles: np.ndarray, references: np.ndarray, neg_quantiles: np.ndarray,
                   neg_references: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """The linear flavour's numbers before the normal ppf: ``numeric[:, columns]`` with missing values
    imputed (``statistics``), then the missing indicators of ``columns[indicator]``, each mapped to [0, 1]
    by QuantileTransformer's forward interpolation (see :func:`quantile_uniform`)."""
    n = numeric.shape[0]
    m, k = columns.shape[0], indicator.shape[0]
    x = np.empty((n, m + k))
    for i in range(n):
        for j in range(m):
            v = numeric[i, columns[j]]
            x[i, j] = statistics[j] if math.isnan(v) else v
        for j in range(k):
            x[i, m + j] = 1.0 if math.isnan(numeric[i, columns[indicator[j]]]) else 0.0
    return quantile_uniform(x, quantiles, references, neg_quantiles, neg_references)


@njit(cache=True, nogil=True)
def linear_margins(normal: np.ndarray, low: float, high: float, coef: np.ndarray, positions: np.ndarray,
                   total: np.ndarray, margins: np.ndarray, explain: bool) -> None:  # pragma: no cover
    """Adds ``clip(normal, low, high) * coef`` to ``total`` (n,) and, when ``explain``, to ``margins``
    (n, features) at each column's feature position."""
    n, m = normal.shape
    for i in range(n):
        for j in range(m):
            v = normal[i, j]
            z = (low if v < low else (high if v > high else v)) * coef[j]
            total[i] += z
            if explain:
                margins[i, positions[j]] += z
