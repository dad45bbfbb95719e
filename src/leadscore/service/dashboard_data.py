"""The data behind the dashboard's panels, read from the served model's metadata and the prediction log.

Each function is thin: it shapes what :mod:`leadscore.modeling.importance` and
:mod:`leadscore.monitoring.predlog` give into the response models of :mod:`leadscore.service.schemas`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from leadscore.modeling.importance import feature_importance
from leadscore.monitoring.predlog import read_lead_scores, read_recent
from leadscore.service.holder import ServedModel
from leadscore.service.schemas import (
    DashboardModel,
    Importance,
    LeadHistory,
    LeadScoreEntry,
    ScoreBin,
    ScoreSummary,
)

RADAR = ("precision", "recall", "f1", "roc_auc", "accuracy")
TOP_FEATURES = 10
SCORE_BINS = 10          # bins of 10 points over the 0-100 score
MAX_RECENT = 50_000      # newest scores summarised at most, whatever the window
MAX_HISTORY = 50         # scores of one lead returned at most


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def radar_metrics(test_metrics: Mapping[str, Any]) -> dict[str, float | None]:
    """The radar's five metrics from the stored test metrics; F1 from precision and recall and accuracy
    from precision, recall, the positive rate and the share flagged when not stored (None when neither).

    Examples
    --------
    >>> radar_metrics({"precision": 0.5, "recall": 0.5, "positive_rate": 0.2, "share_flagged": 0.2})
    {'precision': 0.5, 'recall': 0.5, 'f1': 0.5, 'roc_auc': None, 'accuracy': 0.8}
    """
    got = {name: _number(test_metrics.get(name)) for name in (*RADAR, "positive_rate", "share_flagged")}
    precision, recall = got["precision"], got["recall"]
    if got["f1"] is None and precision is not None and recall is not None:
        got["f1"] = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    rate, flagged = got["positive_rate"], got["share_flagged"]
    if got["accuracy"] is None and None not in (recall, rate, flagged):
        hits = recall * rate  # type: ignore[operator]
        got["accuracy"] = round(1 - (flagged - hits) - (rate - hits), 6)  # type: ignore[operator]
    return {name: got[name] for name in RADAR}


def _importance(served: ServedModel) -> tuple[list[Importance], str | None]:
    try:
        shares = feature_importance(served.scorer.bundle.model)
    except (AttributeError, TypeError, ValueError, IndexError, KeyError):
        return [], f"no feature importance for a {served.scorer.bundle.metadata.get('model')} model"
    top = shares.head(TOP_FEATURES)
    return [Importance(feature=str(name), share=float(share)) for name, share in top.items()], None


def model_summary(served: ServedModel) -> DashboardModel:
    """Version, creation, training window, the radar's metrics and the top features of ``served``."""
    meta = served.scorer.bundle.metadata
    stored = meta.get("test_metrics") or {}
    metrics = radar_metrics(stored)
    window = meta.get("training_window")
    importance, note = _importance(served)
    return DashboardModel(
        version=served.version, model=meta.get("model"), created_at=meta.get("created_at"),
        training_window=[None if w is None else str(w) for w in window] if isinstance(window, list) else None,
        metrics=metrics, missing=[name for name, value in metrics.items() if value is None],
        other_metrics={k: v for k, raw in stored.items()
                       if k not in RADAR and (v := _number(raw)) is not None},
        importance=importance, importance_note=note)


def score_summary(engine: sa.Engine, table: sa.Table, *, days: int, now: datetime) -> ScoreSummary:
    """Histogram (bins of 10 points) and tier counts of the served scores of the last ``days`` days."""
    frame = read_recent(engine, table, since=now - timedelta(days=days), limit=MAX_RECENT + 1)
    truncated = len(frame) > MAX_RECENT
    frame = frame.head(MAX_RECENT)
    width = 100 // SCORE_BINS
    index = (frame["score"].clip(0, 100) // width).clip(upper=SCORE_BINS - 1).astype(int)
    counts = index.value_counts()
    bins = [ScoreBin(low=i * width, high=(i + 1) * width, count=int(counts.get(i, 0)))
            for i in range(SCORE_BINS)]
    tiers = frame["tier"].fillna("(none)").astype(str).value_counts()
    return ScoreSummary(days=days, count=len(frame), truncated=truncated, limit=MAX_RECENT, bins=bins,
                        tiers={str(k): int(v) for k, v in tiers.items()})


def lead_history(engine: sa.Engine, table: sa.Table, lead_id: str) -> LeadHistory | None:
    """A lead's served scores, newest first (None when it was never scored)."""
    rows = read_lead_scores(engine, table, lead_id, limit=MAX_HISTORY)
    if not rows:
        return None
    entries = [LeadScoreEntry(model_version=r["model_version"], probability=r["probability"],
                              score=r["score"], tier=r["tier"], scored_at=r["scored_at"],
                              reasons=r["outputs"].get("reasons") if isinstance(r["outputs"], dict) else None)
               for r in rows]
    return LeadHistory(lead_id=lead_id, latest=entries[0], history=entries)
