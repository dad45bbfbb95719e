"""Prepared feature arrays for compiled members, and the ColumnTransformer layouts they reproduce."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OrdinalEncoder

from leadscore.core.exceptions import UnsupportedModelError
from leadscore.core.threads import n_threads
from leadscore.data.schema import TableSchema
from leadscore.scoring.explain import feature_positions, to_probability_units

FEW_ROWS = 2_000  # up to this many rows native libraries run on one thread (handing off costs more)
UNSEEN = "\x00leadscore-unseen-category\x00"  # a category no encoder has seen


SMALL = 32  # up to this many rows, categories are factorized in Python


def _factorize(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``pd.factorize`` of a few folded categories (strings or NaN): codes, -1 for missing, and uniques."""
    seen: dict[Any, int] = {}
    codes = np.empty(len(values), dtype=np.intp)
    for i, v in enumerate(values):
        codes[i] = -1 if not isinstance(v, str) else seen.setdefault(v, len(seen))
    uniques = np.empty(len(seen), dtype=object)
    uniques[:] = list(seen)
    return codes, uniques


@dataclass(frozen=True)
class Layout:
    """A schema's prepared feature names, computed once."""

    features: list[str]
    numeric: list[str]
    categorical: list[str]
    numeric_position: dict[str, int]
    categorical_position: dict[str, int]

    @classmethod
    def of(cls, schema: TableSchema) -> Layout:
        numeric, categorical = schema.numeric_features, schema.categorical_features
        return cls(schema.feature_names, numeric, categorical, {n: i for i, n in enumerate(numeric)},
                   {n: i for i, n in enumerate(categorical)})


class Batch:
    """Prepared features of ``n`` rows: numbers as one float64 matrix, categories factorized once.

    Parameters
    ----------
    columns : prepared feature name -> 1-D array (float64 numbers; object categories: folded text or NaN).
    layout : the schema's feature names (:meth:`Layout.of`).
    """

    def __init__(self, columns: Mapping[str, np.ndarray], layout: Layout) -> None:
        numeric, categorical = layout.numeric, layout.categorical
        self.n = len(columns[layout.features[0]])
        self.numeric_position = layout.numeric_position
        self.categorical_position = layout.categorical_position
        if self.n <= SMALL and numeric:
            self.numeric = np.array([columns[name] for name in numeric], dtype="float64").T.copy()
        else:
            self.numeric = np.empty((self.n, len(numeric)))
            for i, name in enumerate(numeric):
                self.numeric[:, i] = columns[name]
        self._categories = [np.asarray(columns[name], dtype=object) for name in categorical]
        self._factors: list[tuple[np.ndarray, np.ndarray]] | None = None

    def factors(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per categorical feature: (codes, distinct values), code -1 for a missing value."""
        if self._factors is None:
            self._factors = [pd.factorize(values) if self.n > SMALL else _factorize(values)
                             for values in self._categories]
        return self._factors

    def map_categories(self, feature: str, func: Callable[[Any], Any], missing: Any) -> np.ndarray:
        """Per row, ``func(value)`` (object array; ``missing`` if missing), once per distinct value."""
        codes, uniques = self.factors()[self.categorical_position[feature]]
        table = np.empty(len(uniques) + 1, dtype=object)
        table[:-1] = [func(v) for v in uniques]
        table[-1] = missing
        return table.take(codes)

    def encode(self, feature: str, lookup: Mapping[Any, Any], unknown: Any, missing: Any,
               dtype: Any = "float64") -> np.ndarray:
        """Per row, ``lookup[value]`` (``unknown`` for other values, ``missing`` for a missing one)."""
        if self.n <= SMALL and self._factors is None:  # a few rows: look each value up directly
            return np.array([lookup.get(v, unknown) if isinstance(v, str) else missing
                             for v in self._categories[self.categorical_position[feature]]], dtype=dtype)
        codes, uniques = self.factors()[self.categorical_position[feature]]
        table = np.empty(len(uniques) + 1, dtype=dtype)
        table[:-1] = [lookup.get(v, unknown) for v in uniques]
        table[-1] = missing
        return table.take(codes)


@dataclass(frozen=True)
class Block:
    """One part of a ColumnTransformer: ``kind`` is ``numbers`` (passthrough), ``codes`` (OrdinalEncoder),
    ``text`` (categories as text, CatBoost) or ``linear`` (the linear flavour's pipelines)."""

    name: str
    kind: str
    columns: tuple[str, ...]
    transformer: Any


def blocks(prep: Any, schema: TableSchema, kinds: Mapping[str, Callable[[Any], bool]]) -> list[Block]:
    """The fitted ColumnTransformer ``prep`` as blocks, each classified by the first matching predicate
    of ``kinds`` (name -> test on the transformer); raises UnsupportedModelError otherwise."""
    if not isinstance(prep, ColumnTransformer):
        raise UnsupportedModelError(f"expected a ColumnTransformer, got {type(prep).__name__}")
    numeric, categorical = set(schema.numeric_features), set(schema.categorical_features)
    out = []
    for name, transformer, columns in prep.transformers_:
        if transformer == "drop" or (isinstance(columns, Sequence) and len(columns) == 0):
            continue
        if not isinstance(columns, list | tuple) or not all(isinstance(c, str) for c in columns):
            raise UnsupportedModelError(f"transformer {name!r}: expected a list of column names")
        kind = next((k for k, test in kinds.items() if test(transformer)), None)
        wanted = numeric if kind in ("numbers", "linear_numbers") else categorical
        if kind is None or not set(columns) <= wanted:
            raise UnsupportedModelError(f"transformer {name!r} ({type(transformer).__name__}) on "
                                        f"{list(columns)[:3]}: not a supported layout")
        out.append(Block(name, kind, tuple(columns), transformer))
    return out


def category_lookup(transform: Callable[[pd.DataFrame], np.ndarray], features: Sequence[str], feature: str,
                    known: Sequence[Any]) -> tuple[dict[Any, np.ndarray], np.ndarray, np.ndarray]:
    """Outputs of a fitted categorical ``transform`` (fitted on ``features``) for each value of ``feature``:
    ``(value -> output row, output for an unseen value, output for a missing value)``.

    Every other feature is held at a missing value; callers use only the output columns of ``feature``.
    """
    values = [v for v in known if isinstance(v, str)]
    probe = [*values, UNSEEN, np.nan]
    frame = pd.DataFrame({f: pd.Series(probe if f == feature else [np.nan] * len(probe), dtype=object)
                          for f in features})
    out = np.asarray(transform(frame))
    return {v: out[i] for i, v in enumerate(values)}, out[-2], out[-1]


def is_passthrough(transformer: Any) -> bool:
    """``"passthrough"``, which a fitted ColumnTransformer holds as an identity FunctionTransformer."""
    if isinstance(transformer, str):
        return transformer == "passthrough"
    return isinstance(transformer, FunctionTransformer) and transformer.func is None


def pipeline_steps(member: Any) -> tuple[list[Any], Any]:
    """(transform steps applied at predict time, final estimator); samplers such as SMOTE are skipped."""
    if not isinstance(member, Pipeline):
        raise UnsupportedModelError(f"expected a Pipeline, got {type(member).__name__}")
    steps = [step for _, step in member.steps[:-1]
             if step not in (None, "passthrough") and not hasattr(step, "fit_resample")]
    return steps, member.steps[-1][1]


def threads(rows: int) -> int:
    """Threads for a native library call on ``rows`` rows."""
    return 1 if rows <= FEW_ROWS else n_threads()


@dataclass(frozen=True)
class MemberOutput:
    """A compiled member's positive-class probability and, when explained, its contributions in
    probability units per prepared feature (``p0`` the base), as :mod:`leadscore.scoring.explain`
    defines them."""

    proba: np.ndarray
    p0: np.ndarray | None = None
    values: np.ndarray | None = None


class TreeInput:
    """The tree flavour's ColumnTransformer (numbers passed through, categories as OrdinalEncoder codes)
    as a float64 matrix built from a :class:`Batch`."""

    def __init__(self, prep: Any, schema: TableSchema, kinds: dict[str, Any] | None = None) -> None:
        self.blocks = blocks(prep, schema, kinds or {
            "numbers": is_passthrough, "codes": lambda t: isinstance(t, OrdinalEncoder)})
        self.names = [str(n) for n in prep.get_feature_names_out()]
        groups = {b.name: list(b.columns) for b in self.blocks}
        self.positions = feature_positions(self.names, groups, schema.feature_names)
        self.one_to_one = len(set(self.positions.tolist())) == len(self.positions)
        self.width = sum(len(b.columns) for b in self.blocks)
        self.blocks_kind = [b.kind for b in self.blocks for _ in b.columns]
        self.features = [f for b in self.blocks for f in b.columns]
        if self.width != len(self.names):
            raise UnsupportedModelError(f"expected {self.width} transformed columns, got {len(self.names)}")
        self.lookups: dict[str, tuple[dict[Any, float], float, float]] = {}
        for block in self.blocks:
            if block.kind == "codes":
                for i, feature in enumerate(block.columns):
                    known, unseen, missing = category_lookup(block.transformer.transform, block.columns,
                                                             feature, block.transformer.categories_[i])
                    self.lookups[feature] = ({k: float(v[i]) for k, v in known.items()},
                                             float(unseen[i]), float(missing[i]))

    def matrix(self, batch: Batch) -> np.ndarray:
        out = np.empty((batch.n, self.width))
        numbers = [(j, batch.numeric_position[f]) for j, (f, kind) in enumerate(zip(self.features,
                                                                                     self.blocks_kind,
                                                                                     strict=True))
                   if kind == "numbers"]
        if numbers:
            out[:, [j for j, _ in numbers]] = batch.numeric[:, [i for _, i in numbers]]
        for j, (feature, kind) in enumerate(zip(self.features, self.blocks_kind, strict=True)):
            if kind != "numbers":
                out[:, j] = batch.encode(feature, *self.lookups[feature])
        return out

    def to_features(self, values: np.ndarray, n_features: int) -> np.ndarray:
        """Contributions per transformed column -> per prepared feature (step 3 of the mapping)."""
        out = np.zeros((len(values), n_features))
        if self.one_to_one:
            out[:, self.positions] = values + 0.0  # + 0.0: a sum of zeros and -0.0 is 0.0, as in explain
            return out
        for k, position in enumerate(self.positions):
            out[:, position] += values[:, k]
        return out


def probability_units(base: np.ndarray, values: np.ndarray, tree_input: TreeInput, n_features: int,
                      served: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Steps 2 and 3 of :mod:`leadscore.scoring.explain` for a log-odds member: (p0, contributions per
    feature)."""
    p0, contrib = to_probability_units(base, values, expit, served)
    return p0, tree_input.to_features(contrib, n_features)
