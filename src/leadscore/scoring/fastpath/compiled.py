"""The compiled model: members, ensemble arithmetic, calibration, and the check against the general path.

What is compiled (everything else falls back to the general path, which stays the reference):

* a :class:`~leadscore.modeling.ensemble.LeadModel` (or a single candidate pipeline) whose members are the
  ``logistic`` (SMOTE skipped as at predict time), ``lightgbm``, ``xgboost`` and ``catboost`` candidates
  of :mod:`leadscore.modeling.candidates`, with a Platt, isotonic or no calibrator;
* not compiled: :class:`~leadscore.modeling.segments.SegmentedModel`,
  :class:`~leadscore.modeling.rules.RuleScorer`,
  random forests, anything else, and any model whose compiled form does not reproduce the general path
  on the verification rows (probabilities and contributions within :data:`TOLERANCE`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.linear_model import LogisticRegression

from leadscore.core.exceptions import LeadscoreError, UnsupportedModelError
from leadscore.data.schema import TableSchema
from leadscore.modeling.calibration import EPS, Calibrator
from leadscore.modeling.ensemble import LeadModel
from leadscore.modeling.kinds import tree_kind
from leadscore.scoring.explain import calibrate_contributions, explain_model
from leadscore.scoring.fastpath.inputs import UNSEEN, Batch, Layout

log = logging.getLogger(__name__)

TOLERANCE = 1e-9  # compiled vs general path, probabilities and contributions
SAMPLE_ROWS = 128  # synthetic verification rows (plus up to as many rows of the first batch)
PARALLEL_ROWS = 4096  # from this many rows, members run on two threads
SINGLE_ROWS = 16  # verification rows also scored one at a time


@dataclass(frozen=True)
class Scores:
    """Per row: calibrated probability, member agreement and, when explained, the contributions (base
    and values per prepared feature, in ``schema.feature_names`` order) of
    :mod:`leadscore.scoring.explain`."""

    probability: np.ndarray
    agreement: np.ndarray
    base: np.ndarray | None = None
    values: np.ndarray | None = None


class _Member(Protocol):
    def run(self, batch: Batch, explain: bool) -> Any: ...


def member_agreement(probs: Sequence[np.ndarray], weights: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(raw ensemble probability, agreement) from the active members' probabilities and weights, with
    the arithmetic of :meth:`LeadModel.raw_proba` (see :mod:`leadscore.scoring.scorer` for the definition)."""
    total = np.zeros(len(probs[0]))
    for weight, prob in zip(weights, probs, strict=True):
        total += weight * prob
    raw = np.clip(total, 0.0, 1.0)
    squares = np.zeros(len(raw))
    for weight, prob in zip(weights, probs, strict=True):  # member by member (not BLAS): the same sum
        squares += (prob - raw) ** 2 * weight               # for one row as for a batch
    spread = np.sqrt(np.clip(squares, 0.0, None))
    widest = np.sqrt(raw * (1.0 - raw))
    agreement = np.where(widest > 1e-12, 1.0 - spread / np.where(widest > 1e-12, widest, 1.0), 1.0)
    return raw, np.clip(agreement, 0.0, 1.0)


def _compile_calibrator(calibrator: Calibrator | None) -> Callable[[np.ndarray], np.ndarray] | None:
    """A NumPy form of a Platt calibrator (``Calibrator.transform`` without input checks); other
    calibrators are called as they are."""
    if calibrator is None:
        return None
    model = calibrator.model_
    if calibrator.method == "platt" and isinstance(model, LogisticRegression) and model.coef_.shape == (1, 1):
        slope, intercept = float(model.coef_[0, 0]), float(model.intercept_[0])

        def platt(prob: np.ndarray) -> np.ndarray:
            p = np.clip(prob, EPS, 1 - EPS)
            return np.clip(expit(np.log(p / (1 - p)) * slope + intercept), EPS, 1 - EPS)

        grid = np.concatenate([np.linspace(0, 1, 1001), [EPS, 1 - EPS, 1e-300, 1 - 1e-16]])
        if np.max(np.abs(platt(grid) - calibrator.transform(grid))) <= 1e-15:
            return platt
    return calibrator.transform


def _member(member: Any, schema: TableSchema) -> _Member:
    """The compiled form of one member; each library's module is imported only for its own kind."""
    final = member.steps[-1][1] if hasattr(member, "steps") else member
    if isinstance(final, LogisticRegression):
        from leadscore.scoring.fastpath.linear import LinearMember

        return LinearMember(member, schema)
    kind = tree_kind(final)
    if kind == "lightgbm":
        from leadscore.scoring.fastpath.lightgbm_member import LightGBMMember

        return LightGBMMember(member, schema)
    if kind == "xgboost":
        from leadscore.scoring.fastpath.xgboost_member import XGBoostMember

        return XGBoostMember(member, schema)
    if kind == "catboost":
        from leadscore.scoring.fastpath.catboost_member import CatBoostMember

        return CatBoostMember(member, schema)
    raise UnsupportedModelError(f"no compiled form for {type(final).__name__}")


_POOL: tuple[int, ThreadPoolExecutor] | None = None


def _pool() -> ThreadPoolExecutor:
    """Two worker threads for the members of a large batch (made again in a forked child process)."""
    global _POOL
    if _POOL is None or _POOL[0] != os.getpid():
        _POOL = (os.getpid(), ThreadPoolExecutor(2, thread_name_prefix="leadscore-fastpath"))
    return _POOL[1]


class CompiledModel:
    """A fitted model in compiled form (see the module docstring); build it with :func:`compile_model`."""

    def __init__(self, model: Any, schema: TableSchema) -> None:
        self.schema = schema
        self.layout = Layout.of(schema)
        self.ensemble = isinstance(model, LeadModel)
        members, weights = (model.members, model.weights) if self.ensemble else ({"m": model}, {"m": 1.0})
        active = [name for name in members if weights[name] > 0]
        self.names = active
        self.weights = [float(weights[name]) for name in active]
        self.members = [_member(members[name], schema) for name in active]
        self.calibrate = _compile_calibrator(model.calibrator) if self.ensemble else None

    def score(self, columns: Mapping[str, np.ndarray], *, explain: bool = False) -> Scores:
        """Probability, agreement and (``explain``) contributions for prepared feature arrays.

        Parameters
        ----------
        columns : prepared feature name -> 1-D array (:func:`leadscore.data.schema.prepare_columns`).
        explain : also compute the contributions (:func:`leadscore.scoring.explain.contributions`).
        """
        batch = Batch(columns, self.layout)
        if batch.n >= PARALLEL_ROWS and len(self.members) > 1:
            batch.factors()
            outputs = list(_pool().map(lambda m: m.run(batch, explain), self.members))
        else:
            outputs = [m.run(batch, explain) for m in self.members]
        probs = [out.proba for out in outputs]
        if self.ensemble:
            raw, agreement = member_agreement(probs, self.weights)
            prob = self.calibrate(raw) if self.calibrate is not None else raw
        else:
            prob, agreement = probs[0], np.ones(batch.n)
        if not explain:
            return Scores(np.asarray(prob, dtype="float64"), agreement)
        base, values = np.zeros(batch.n), np.zeros((batch.n, len(self.layout.features)))
        for weight, out in zip(self.weights, outputs, strict=True):
            base += weight * out.p0
            values += weight * out.values
        if self.calibrate is not None:
            base, values = calibrate_contributions(base, values, self.calibrate)
        return Scores(np.asarray(prob, dtype="float64"), agreement, base, values)


# --- verification -----------------------------------------------------------------------------------

def _candidates(model: Any, compiled: CompiledModel) -> tuple[dict[str, list[float]], dict[str, list[Any]]]:
    """Values worth checking per feature: LightGBM split thresholds and the next float above each,
    quantile knots, known categories, plus 0, 1, -1, missing and unseen values."""
    schema = compiled.schema
    numbers: dict[str, set[float]] = {f: {np.nan, 0.0, 1.0, -1.0} for f in schema.numeric_features}
    categories: dict[str, set[Any]] = {f: {np.nan, UNSEEN, "(missing)"} for f in schema.categorical_features}
    members = model.members.values() if isinstance(model, LeadModel) else [model]
    for member in members:
        for step in getattr(member, "named_steps", {}).values():
            for _, transformer, columns in getattr(step, "transformers_", []):
                for sub in getattr(transformer, "named_steps", {"t": transformer}).values():
                    for i, column in enumerate(columns if isinstance(columns, list | tuple) else []):
                        if column in categories and hasattr(sub, "categories_"):
                            categories[column] |= {v for v in sub.categories_[i] if isinstance(v, str)}
                        if column in numbers and hasattr(sub, "quantiles_") and i < sub.quantiles_.shape[1]:
                            numbers[column] |= set(np.asarray(sub.quantiles_)[:, i].tolist())
    for member in compiled.members:
        for feature, values in getattr(member, "probe_values", dict)().items():
            numbers[feature] |= set(values)
    return ({f: sorted(v, key=lambda x: (np.isnan(x), x)) for f, v in numbers.items()},
            {f: sorted(v, key=lambda x: (not isinstance(x, str), str(x))) for f, v in categories.items()})


def verification_rows(model: Any, compiled: CompiledModel, rows: int = SAMPLE_ROWS,
                      seed: int = 0) -> pd.DataFrame:
    """Synthetic prepared-feature rows mixing every candidate value of :func:`_candidates` (seeded)."""
    schema = compiled.schema
    numbers, categories = _candidates(model, compiled)
    rng = np.random.default_rng(seed)
    data: dict[str, Any] = {}
    for name in schema.feature_names:
        if name in categories:
            values = np.array(categories[name], dtype=object)
            data[name] = pd.Series(values[rng.integers(0, len(values), rows)], dtype=object)
        else:
            values = np.array(numbers.get(name, [np.nan, 0.0, 1.0]), dtype="float64")
            data[name] = pd.Series(values[rng.integers(0, len(values), rows)], dtype="float64")
    return pd.DataFrame(data)


def _check(label: str, got: np.ndarray, want: np.ndarray) -> None:
    gap = float(np.max(np.abs(np.asarray(got, dtype="float64") - np.asarray(want, dtype="float64")),
                       initial=0.0))
    if not gap <= TOLERANCE:
        raise UnsupportedModelError(f"{label}: compiled path differs from the general path by {gap:.3g}")


def verify(model: Any, compiled: CompiledModel, X: pd.DataFrame) -> None:  # noqa: N803
    """Raise UnsupportedModelError unless ``compiled`` reproduces ``model`` on prepared rows ``X``: each
    member's probability, and the model's probability and contributions (:mod:`leadscore.scoring.explain`)."""
    columns = {c: X[c].to_numpy() for c in X.columns}
    batch = Batch(columns, compiled.layout)
    members = model.members if compiled.ensemble else {"m": model}
    for name, member in zip(compiled.names, compiled.members, strict=True):
        proba = member.run(batch, False).proba
        _check(f"{name} probability", proba, LeadModel._positive_proba(members[name], X))
        if not np.array_equal(member.run(batch, True).proba, proba):  # reasons must not move the score
            raise UnsupportedModelError(f"{name}: probability with and without explanation differs")
    scores = compiled.score(columns, explain=True)
    _check("probability", scores.probability, np.asarray(model.predict_proba(X))[:, 1])
    base, values = explain_model(model, X)
    _check("base", scores.base, base)  # type: ignore[arg-type]
    _check("contributions", scores.values, values)  # type: ignore[arg-type]
    for i in range(min(len(X), SINGLE_ROWS)):  # one row at a time takes other routes: same numbers
        one = compiled.score({c: v[i:i + 1] for c, v in columns.items()}, explain=True)
        pairs = [(one.probability, scores.probability), (one.agreement, scores.agreement),
                 (one.base, scores.base), (one.values, scores.values)]
        if not all(got is not None and want is not None and np.array_equal(got, want[i:i + 1])
                   for got, want in pairs):
            raise UnsupportedModelError(f"row {i} scored alone differs from its batch row")


def compile_model(model: Any, schema: TableSchema,
                  sample: pd.DataFrame | None = None) -> CompiledModel | None:
    """The compiled form of ``model``, verified on synthetic rows and ``sample``; None when a part of it
    is not supported or does not match the general path (logged at INFO with the reason).

    Parameters
    ----------
    model : the bundle's fitted model (``bundle.model``).
    schema : its raw-field schema.
    sample : prepared rows (``prepare_features``) to verify on as well, e.g. the first batch.
    """
    try:
        import numba  # noqa: F401  # the compiled loops need it
    except ImportError:
        log.info("fast path off: numba is not installed")
        return None
    try:
        compiled = CompiledModel(model, schema)
        rows = verification_rows(model, compiled)
        if sample is not None and len(sample):
            rows = pd.concat([rows, sample[schema.feature_names].head(SAMPLE_ROWS)], ignore_index=True)
        verify(model, compiled, rows)
    except (UnsupportedModelError, LeadscoreError) as exc:
        log.info("fast path off for %s: %s", type(model).__name__, exc)
        return None
    except (AttributeError, TypeError, ValueError, KeyError, IndexError) as exc:  # an unexpected layout
        log.warning("fast path off for %s: %s: %s", type(model).__name__, type(exc).__name__, exc)
        return None
    return compiled
