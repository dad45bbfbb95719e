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
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leadscore.bundle import ModelBundle, load_bundle, read_metadata
from leadscore.decision import DEFAULT_TIERS, Tier, assign_tiers, tiers_from_config
from leadscore.ensemble import LeadModel
from leadscore.exceptions import DataValidationError, ModelNotFoundError
from leadscore.explain import contributions, top_reasons
from leadscore.registry import Registry
from leadscore.schema import TableSchema, check_columns, match_columns, prepare_features

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
    if hasattr(model, "segment_models") and hasattr(model, "global_model"):  # SegmentedModel
        prob, agreement = _member_outputs(model.global_model, X)
        segment = X[model.column].to_numpy() if model.column in X.columns else np.full(len(X), None)
        for value, sub in model.segment_models.items():
            rows = segment == value
            if rows.any():
                prob[rows], agreement[rows] = _member_outputs(sub, X.loc[rows])
        return prob, agreement
    if not isinstance(model, LeadModel):
        return np.asarray(model.predict_proba(X))[:, 1].astype(float), np.ones(len(X))
    active = [name for name in model.members if model.weights[name] > 0]
    members = {name: model._positive_proba(model.members[name], X) for name in active}
    total = np.zeros(len(X))
    for name in active:  # the order and arithmetic of LeadModel.raw_proba
        total += model.weights[name] * members[name]
    raw = np.clip(total, 0.0, 1.0)
    weights = np.array([model.weights[name] for name in active])
    stacked = np.column_stack([members[name] for name in active])
    spread = np.sqrt(np.clip(((stacked - raw[:, None]) ** 2) @ weights, 0.0, None))
    widest = np.sqrt(raw * (1.0 - raw))
    agreement = np.where(widest > 1e-12, 1.0 - spread / np.where(widest > 1e-12, widest, 1.0), 1.0)
    prob = model.calibrator.transform(raw) if model.calibrator is not None else raw
    return np.asarray(prob, dtype=float), np.clip(agreement, 0.0, 1.0)


def support(X: pd.DataFrame, schema: TableSchema) -> np.ndarray:  # noqa: N803
    """Share of the usually filled input fields (training missing rate < 0.5) filled for each row."""
    filled = []
    for spec in schema.columns:
        if spec.missing_rate >= USUALLY_FILLED:
            continue
        first = spec.feature_names()[0]
        values = X[first]
        filled.append((values == 1).to_numpy() if spec.kind == "presence" else values.notna().to_numpy())
    if not filled:
        return np.ones(len(X))
    return np.mean(np.column_stack(filled), axis=1)


def _reasons_json(reasons: Sequence[Mapping[str, list[Any]]]) -> list[str]:
    return [json.dumps({side: [{"field": r.field, "points": r.points, "text": r.text} for r in items]
                        for side, items in row.items()}, ensure_ascii=False) for row in reasons]


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 0 <= k <= MAX_REASONS:
        raise DataValidationError(f"reasons: expected an integer from 0 to {MAX_REASONS}, got {k!r}")
    return int(k)


@dataclass
class Scorer:
    """A verified model and its version, ready to score raw lead rows.

    Parameters
    ----------
    bundle : the loaded model (pipeline, raw-field schema, metadata).
    version : the registry version (``YYYYMMDDHHMMSS``) or another label of the model.
    allow_missing : score rows even when a column required in training is absent.
    """

    bundle: ModelBundle
    version: str
    allow_missing: bool = False

    def __post_init__(self) -> None:
        saved = self.bundle.metadata.get("tiers")
        self.tiers: tuple[Tier, ...] = tiers_from_config(saved) if saved else DEFAULT_TIERS

    @property
    def schema(self) -> TableSchema:
        return self.bundle.schema

    @property
    def id_column(self) -> str:
        """The lead id column of the input (``row`` when the model has none: 1-based row numbers)."""
        return self.schema.id_column or "row"

    @classmethod
    def load(cls, model: str | Path | None = None, *, registry: str | Path | None = None,
             allow_missing: bool = False) -> Scorer:
        """A model folder (``fit``/``export`` output), or a registry version (default: the active one).

        Raises
        ------
        ModelNotFoundError
            If there is no such folder or version, or the registry has no active model.
        ModelIntegrityError
            If the artifact does not match its recorded sha256.
        """
        if model is not None and Path(model).is_dir():
            meta = read_metadata(model)
            version = str(meta.get("version") or f"dir:{Path(model).resolve().name}")
            return cls(load_bundle(model), version, allow_missing)
        reg = Registry(registry or Registry.default_root())
        if model is not None and not str(model).isdigit():
            raise ModelNotFoundError(f"--model {model}: expected a model folder or a registry version "
                                     f"(YYYYMMDDHHMMSS), got neither")
        bundle = reg.load(None if model is None else str(model))
        return cls(bundle, str(bundle.metadata.get("version") or model), allow_missing)

    def features(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Model input for raw rows (the shared :func:`~leadscore.schema.prepare_features`)."""
        return prepare_features(frame, self.schema, allow_missing=self.allow_missing)

    def check(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Columns matched to the schema; raises before any work when a required column is absent."""
        frame = match_columns(frame, self.schema)
        check_columns(frame, self.schema, allow_missing=self.allow_missing)
        return frame

    def score_frame(self, frame: pd.DataFrame, *, reasons: int = 3,
                    now: datetime | None = None) -> pd.DataFrame:
        """One row per input row, in input order, with :data:`OUTPUT_COLUMNS`.

        ``reasons`` is JSON text ``{"positive": [...], "negative": [...]}`` of at most ``reasons`` items
        per side, each ``{"field", "points", "text"}``. ``reasons=0`` skips the explanation work.
        """
        k = _check_k(reasons)
        frame = self.check(frame)
        if frame.empty:
            return self._empty(frame.index)
        X = self.features(frame)  # noqa: N806
        prob, agreement = _member_outputs(self.bundle.pipeline, X)
        if k:
            explained = top_reasons(contributions(self.bundle.pipeline, X), X, k)
            texts = _reasons_json(explained)
        else:
            texts = ['{"positive": [], "negative": []}'] * len(X)
        tier, action = assign_tiers(prob, self.tiers)
        if self.id_column in frame.columns:
            ids = frame[self.id_column].to_numpy()
        else:  # 1-based row numbers of the input (a chunk keeps its rows' positions in its index)
            ids = frame.index.to_numpy() + 1 if pd.api.types.is_integer_dtype(frame.index) \
                else np.arange(1, len(frame) + 1)
        stamp = pd.Timestamp(now or datetime.now(UTC))
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
        return pd.DataFrame({
            "lead_id": ids, "probability": prob.round(6), "score": to_score(prob), "tier": tier,
            "action": action, "confidence": (agreement * support(X, self.schema)).round(4),
            "reasons": texts, "model_version": self.version,
            "scored_at": pd.Series([stamp] * len(X), index=frame.index, dtype="datetime64[us, UTC]"),
        }, index=frame.index)

    def _empty(self, index: pd.Index) -> pd.DataFrame:
        dtypes = {"lead_id": "object", "probability": "float64", "score": "int16", "tier": "object",
                  "action": "object", "confidence": "float64", "reasons": "object",
                  "model_version": "object", "scored_at": "datetime64[us, UTC]"}
        return pd.DataFrame({c: pd.Series(index=index, dtype=dtypes[c]) for c in OUTPUT_COLUMNS})

    def score_lead(self, lead: Mapping[str, Any], *, reasons: int = 3,
                   now: datetime | None = None) -> dict[str, Any]:
        """One lead (raw fields as a mapping) -> the fields of :meth:`score_frame`, reasons as lists."""
        row = self.score_frame(pd.DataFrame([dict(lead)]), reasons=reasons, now=now).iloc[0]
        out: dict[str, Any] = {str(k): v for k, v in row.items()}
        out["reasons"] = json.loads(out["reasons"])
        out["scored_at"] = row["scored_at"].isoformat()
        for key in ("probability", "confidence"):
            out[key] = float(out[key])
        out["score"] = int(out["score"])
        return out
