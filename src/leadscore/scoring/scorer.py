"""The score of a lead: everything sales sees, from raw rows, with one model version.

For each lead :class:`Scorer` returns ``lead_id``, the calibrated ``probability``, the 0-100 ``score``,
``tier`` and ``action`` (saved with the model from ``params.yaml``), a ``confidence`` in [0, 1], the top
K positive and negative ``reasons`` (exact contributions in score points, in plain words), the
``model_version`` and ``scored_at`` (UTC). Batch files, databases, Dask and the API all call it.

Confidence
----------
``confidence = agreement * support``, both in [0, 1]:

* ``agreement``: how much the ensemble's members agree on the lead. With member probabilities ``p_i`` and
  ensemble weights ``w_i`` (before calibration), mean ``m = sum w_i p_i`` and weighted standard deviation
  ``s = sqrt(sum w_i (p_i - m)^2)``, ``agreement = 1 - s / sqrt(m (1 - m))``. ``sqrt(m (1 - m))`` is the
  largest spread probabilities with mean ``m`` can have (members split between 0 and 1), so agreement is
  1 when all members say the same and 0 at the largest possible disagreement. A single model: 1.
* ``support``: the share of the lead's *usually filled* input fields (missing in under half of the
  training rows) that are filled. A lead missing most of what the model learned from gets a low value.

Speed
-----
On first use a Scorer compiles its model (:mod:`leadscore.scoring.fastpath`): NumPy, numba and native-library
forms of the fitted pipelines, checked against them on sample rows (and the first batch), so that leads
are scored without pandas or scikit-learn in the loop. Models it cannot compile exactly are scored by
the general path (``predict_proba`` on :func:`~leadscore.data.schema.prepare_features`,
:func:`~leadscore.scoring.explain.contributions`); both give the same fields. Compiling takes a few seconds
(more the first time numba builds its cache): a server calls :meth:`Scorer.compiled` once at start-up.
The compiled form is not pickled: a copy (e.g. on a Dask worker) compiles again.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leadscore.artifacts.bundle import ModelBundle, load_bundle, read_metadata
from leadscore.artifacts.registry import Registry
from leadscore.core.exceptions import DataValidationError, ModelNotFoundError
from leadscore.data.schema import (
    TableSchema,
    check_columns,
    features_frame,
    match_columns,
    prepare_columns,
    prepare_features,
    prepare_lead,
)
from leadscore.evaluation.tiers import Tier, assign_tiers, saved_tiers
from leadscore.modeling.ensemble import LeadModel
from leadscore.modeling.segments import SegmentedModel
from leadscore.scoring.explain import contributions
from leadscore.scoring.fastpath import CompiledModel, compile_model
from leadscore.scoring.fastpath.compiled import member_agreement
from leadscore.scoring.reasons import reason_items, reason_texts

log = logging.getLogger(__name__)

OUTPUT_COLUMNS = ("lead_id", "probability", "score", "tier", "action", "confidence", "reasons",
                  "model_version", "scored_at")
USUALLY_FILLED = 0.5  # a field missing in fewer training rows than this counts towards support
MAX_REASONS = 20


def to_score(prob: np.ndarray) -> np.ndarray:
    """0-100 score: ``round(100 * p)``, so a score of 70 means about a 70% chance."""
    return np.rint(np.asarray(prob, dtype=float) * 100).astype(np.int16)


def _member_outputs(model: Any, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:  # noqa: N803
    """(calibrated probability, agreement) per row; the probability is exactly ``predict_proba``'s."""
    if isinstance(model, SegmentedModel):
        prob, agreement = np.zeros(len(X)), np.ones(len(X))
        for sub, rows in model.route(X):
            prob[rows], agreement[rows] = _member_outputs(sub, X.iloc[rows])
        return prob, agreement
    if not isinstance(model, LeadModel):
        return np.asarray(model.predict_proba(X))[:, 1].astype(float), np.ones(len(X))
    active = [name for name in model.members if model.weights[name] > 0]
    raw, agreement = member_agreement([model._positive_proba(model.members[name], X) for name in active],
                                      [model.weights[name] for name in active])
    prob = model.calibrator.transform(raw) if model.calibrator is not None else raw
    return np.asarray(prob, dtype=float), agreement


def _support_plan(schema: TableSchema) -> tuple[list[str], list[str], int]:
    """(presence features, other first features, count) of the usually filled input fields."""
    usual = [spec for spec in schema.columns if spec.missing_rate < USUALLY_FILLED]
    return ([f"{s.name}__present" for s in usual if s.kind == "presence"],
            [s.feature_names()[0] for s in usual if s.kind != "presence"], len(usual))


def _support(columns: Mapping[str, np.ndarray], plan: tuple[list[str], list[str], int], n: int) -> np.ndarray:
    presence, others, count = plan
    if not count:
        return np.ones(n)
    numbers = [columns[name] for name in others if columns[name].dtype.kind == "f"]
    filled = np.zeros(n)
    if numbers:  # one call for all number columns (the float features of prepare_columns)
        filled += (~np.isnan(np.column_stack(numbers))).sum(axis=1)
    for name in others:
        if columns[name].dtype.kind != "f":
            filled += ~pd.isna(columns[name])
    for name in presence:
        filled += columns[name] == 1
    return filled / count


def support(X: pd.DataFrame, schema: TableSchema) -> np.ndarray:  # noqa: N803
    """Share of the usually filled input fields (training missing rate < 0.5) filled for each row."""
    plan = _support_plan(schema)
    return _support({name: X[name].to_numpy() for name in plan[0] + plan[1]}, plan, len(X))


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 0 <= k <= MAX_REASONS:
        raise DataValidationError(f"reasons: expected an integer from 0 to {MAX_REASONS}, got {k!r}")
    return int(k)


_NOT_COMPILED: Any = object()  # Scorer._compiled before the first score
EMPTY_REASONS = '{"positive": [], "negative": []}'
COMPILE_SAMPLE = 128  # rows of the first batch the compiled model is also checked on


@dataclass
class Scorer:
    """A verified model and its version, ready to score raw lead rows.

    Parameters
    ----------
    bundle : the loaded model (pipeline, raw-field schema, metadata).
    version : the registry version (``YYYYMMDDHHMMSS``) or another label of the model.
    allow_missing : score rows even when a column required in training is absent.
    fast_path : compile the model on first use (:mod:`leadscore.scoring.fastpath`); False always uses the
        general path (same results, slower).
    """

    bundle: ModelBundle
    version: str
    allow_missing: bool = False
    fast_path: bool = True

    def __post_init__(self) -> None:
        self.tiers: tuple[Tier, ...] = saved_tiers(self.bundle.metadata)
        self._compiled: CompiledModel | None = _NOT_COMPILED
        self._plan = _support_plan(self.schema)
        self._features = self.schema.feature_names
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_lock", None)
        state["_compiled"] = _NOT_COMPILED  # compiled again where it is unpickled
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._compiled = _NOT_COMPILED
        self._lock = threading.Lock()

    @property
    def schema(self) -> TableSchema:
        return self.bundle.schema

    @property
    def id_column(self) -> str:
        """The lead id column of the input (``row`` when the model has none: 1-based row numbers)."""
        return self.schema.id_column or "row"

    @classmethod
    def load(cls, model: str | Path | None = None, *, registry: str | Path | None = None,
             allow_missing: bool = False, trust: bool = False) -> Scorer:
        """A model folder (``fit``/``export`` output), or a registry version (default: the active one).

        Raises
        ------
        ModelNotFoundError
            If there is no such folder or version, or the registry has no active model.
        ModelIntegrityError
            If the artifact does not match its recorded sha256, or a model folder is unsigned or signed
            with another key and ``trust`` is not given (registry versions are always signed).
        """
        if model is not None and Path(model).is_dir():
            meta = read_metadata(model)
            version = str(meta.get("version") or f"dir:{Path(model).resolve().name}")
            return cls(load_bundle(model, trust=trust), version, allow_missing)
        reg = Registry(registry or Registry.default_root())
        if model is not None and not str(model).isdigit():
            raise ModelNotFoundError(f"--model {model}: expected a model folder or a registry version "
                                     f"(YYYYMMDDHHMMSS), got neither")
        bundle = reg.load(None if model is None else str(model))
        return cls(bundle, str(bundle.metadata.get("version") or model), allow_missing)

    def features(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Model input for raw rows (the shared :func:`~leadscore.data.schema.prepare_features`)."""
        return prepare_features(frame, self.schema, allow_missing=self.allow_missing)

    def check(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Columns matched to the schema; raises before any work when a required column is absent."""
        frame = match_columns(frame, self.schema)
        check_columns(frame, self.schema, allow_missing=self.allow_missing)
        return frame

    def compiled(self, columns: Mapping[str, np.ndarray] | None = None) -> CompiledModel | None:
        """The compiled model (built on first call, also checked on ``columns``), or None when the model
        is scored by the general path."""
        if self._compiled is _NOT_COMPILED:
            with self._lock:
                if self._compiled is _NOT_COMPILED:
                    sample = None if columns is None else features_frame(
                        {k: v[:COMPILE_SAMPLE] for k, v in columns.items()}, self.schema)
                    self._compiled = compile_model(self.bundle.model, self.schema, sample) \
                        if self.fast_path else None
        return self._compiled

    def _outputs(self, columns: Mapping[str, np.ndarray], index: pd.Index,
                 k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(probability, agreement, contributions (n, features) when ``k``) of prepared rows."""
        compiled = self.compiled(columns)
        if compiled is not None:
            scores = compiled.score(columns, explain=k > 0)
            return scores.probability, scores.agreement, scores.values
        X = features_frame(columns, self.schema, index)  # noqa: N806
        prob, agreement = _member_outputs(self.bundle.model, X)
        values = contributions(self.bundle.model, X).values.to_numpy() if k else None
        return prob, agreement, values

    def score_frame(self, frame: pd.DataFrame, *, reasons: int = 3, now: datetime | None = None,
                    checked: bool = False) -> pd.DataFrame:
        """One row per input row, in input order, with :data:`OUTPUT_COLUMNS`.

        ``reasons`` is JSON text ``{"positive": [...], "negative": [...]}`` of at most ``reasons`` items
        per side, each ``{"field", "points", "text"}``. ``reasons=0`` skips the explanation work.
        ``checked``: ``frame`` already went through :meth:`check` (batch runs check each chunk first).
        """
        k = _check_k(reasons)
        frame = frame if checked else self.check(frame)
        if frame.empty:
            return self._empty(frame.index)
        columns = prepare_columns(frame, self.schema, allow_missing=self.allow_missing)
        prob, agreement, values = self._outputs(columns, frame.index, k)
        n = len(frame)
        texts = reason_texts(values, columns, self._features, k) if values is not None \
            else [EMPTY_REASONS] * n
        tier, action = assign_tiers(prob, self.tiers)
        if self.id_column in frame.columns:
            ids = frame[self.id_column].to_numpy()
        else:  # 1-based row numbers of the input (a chunk keeps its rows' positions in its index)
            ids = frame.index.to_numpy() + 1 if pd.api.types.is_integer_dtype(frame.index) \
                else np.arange(1, n + 1)
        return pd.DataFrame({
            "lead_id": ids, "probability": prob.round(6), "score": to_score(prob), "tier": tier,
            "action": action, "confidence": (agreement * _support(columns, self._plan, n)).round(4),
            "reasons": texts, "model_version": self.version,
            "scored_at": pd.Series(pd.DatetimeIndex([_stamp(now)]).as_unit("us").repeat(n), index=frame.index,
                                   dtype="datetime64[us, UTC]"),
        }, index=frame.index)

    def _empty(self, index: pd.Index) -> pd.DataFrame:
        dtypes = {"lead_id": "object", "probability": "float64", "score": "int16", "tier": "object",
                  "action": "object", "confidence": "float64", "reasons": "object",
                  "model_version": "object", "scored_at": "datetime64[us, UTC]"}
        return pd.DataFrame({c: pd.Series(index=index, dtype=dtypes[c]) for c in OUTPUT_COLUMNS})

    def score_lead(self, lead: Mapping[str, Any], *, reasons: int = 3,
                   now: datetime | None = None) -> dict[str, Any]:
        """One lead (raw fields as a mapping) -> the fields of :meth:`score_frame`, reasons as lists."""
        k = _check_k(reasons)
        lead = dict(lead)
        lead_id = lead.get(self.id_column, 1)  # absent: row number 1, as for a one-row frame
        plain = isinstance(lead_id, str) or (isinstance(lead_id, int | float | np.integer | np.floating)
                                            and not isinstance(lead_id, bool) and -2**63 <= lead_id < 2**63)
        if not plain or self.compiled() is None:
            return self._score_lead_frame(lead, k, now)  # an id a DataFrame column would convert
        columns = prepare_lead(lead, self.schema, allow_missing=self.allow_missing)
        prob, agreement, values = self._outputs(columns, pd.RangeIndex(1), k)
        tier, action = assign_tiers(prob, self.tiers)
        items = reason_items(values, columns, self._features, k)[0] if values is not None \
            else {"positive": [], "negative": []}
        return {
            "lead_id": str(lead_id) if isinstance(lead_id, str) else np.asarray([lead_id])[0],
            "probability": float(prob.round(6)[0]), "score": int(to_score(prob)[0]), "tier": tier[0],
            "action": action[0],
            "confidence": float((agreement * _support(columns, self._plan, 1)).round(4)[0]),
            "reasons": {side: [{"field": r.field, "points": r.points, "text": r.text} for r in rows]
                        for side, rows in items.items()},
            "model_version": self.version, "scored_at": _stamp(now).as_unit("us").isoformat(),
        }

    def _score_lead_frame(self, lead: Mapping[str, Any], k: int, now: datetime | None) -> dict[str, Any]:
        row = self.score_frame(pd.DataFrame([dict(lead)]), reasons=k, now=now).iloc[0]
        out: dict[str, Any] = {str(key): v for key, v in row.items()}
        out["reasons"] = json.loads(out["reasons"])
        out["scored_at"] = row["scored_at"].isoformat()
        for key in ("probability", "confidence"):
            out[key] = float(out[key])
        out["score"] = int(out["score"])
        return out


def _stamp(now: datetime | None) -> pd.Timestamp:
    stamp = pd.Timestamp(now or datetime.now(UTC))
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
