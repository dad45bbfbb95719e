"""Score raw lead rows with a bundle: the one scoring path for files, the pipeline and (later) the API."""

from __future__ import annotations

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from leadscore.bundle import ModelBundle
from leadscore.decision import DEFAULT_TIERS, Tier, assign_tiers, tiers_from_config
from leadscore.schema import check_columns, match_columns, prepare_features
from leadscore.training import check_unique_ids


def predict_proba(bundle: ModelBundle, frame: pd.DataFrame, *,
                  allow_missing: bool = False) -> np.ndarray:
    """Conversion probabilities for raw rows, in input order."""
    features = prepare_features(frame, bundle.schema, allow_missing=allow_missing)
    return bundle.pipeline.predict_proba(features)[:, 1]


def to_score(prob: np.ndarray) -> np.ndarray:
    """0-100 score: ``round(100 * p)``, so a score of 70 means about a 70% chance."""
    return np.rint(np.asarray(prob, dtype=float) * 100).astype(np.int16)


def score_table(bundle: ModelBundle, frame: pd.DataFrame, *, allow_missing: bool = False,
                chunk_size: int = 100_000, progress: bool = False) -> pd.DataFrame:
    """One output row per input row, in input order: id (or ``row``), ``probability``, ``score``,
    ``tier`` and recommended ``action``.

    Raises
    ------
    DataValidationError
        If a required column is missing or the id column has duplicates.
    """
    id_column = bundle.schema.id_column
    frame = match_columns(frame, bundle.schema)
    check_unique_ids(frame, id_column)
    check_columns(frame, bundle.schema, allow_missing=allow_missing)  # fail before any work
    chunk_size = max(1, int(chunk_size))
    parts = []
    with tqdm(total=len(frame), unit="rows", disable=not progress, desc="scoring") as bar:
        for start in range(0, len(frame), chunk_size):
            chunk = frame.iloc[start:start + chunk_size]
            parts.append(predict_proba(bundle, chunk, allow_missing=allow_missing))
            bar.update(len(chunk))
    prob = np.concatenate(parts) if parts else np.empty(0)
    ids = frame[id_column].to_numpy() if id_column else np.arange(1, len(frame) + 1)
    tier, action = assign_tiers(prob, bundle_tiers(bundle))
    return pd.DataFrame({id_column or "row": ids, "probability": prob.round(6),
                         "score": to_score(prob), "tier": tier, "action": action})


def bundle_tiers(bundle: ModelBundle) -> tuple[Tier, ...]:
    """The tiers saved with the model (the defaults for bundles saved without any)."""
    saved = bundle.metadata.get("tiers")
    return tiers_from_config(saved) if saved else DEFAULT_TIERS
