"""The data behind the dashboard's panels, read from the served model's metadata and the prediction log.

Each function is thin: it shapes what :mod:`leadscore.modeling.importance` and
:mod:`leadscore.monitoring.predlog` give into the response models of :mod:`leadscore.service.responses`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from leadscore.core.exceptions import LeadscoreError
from leadscore.data.schema import prepare_features
from leadscore.modeling.importance import feature_importance
from leadscore.monitoring.alerts import CheckState
from leadscore.monitoring.drift import DriftThresholds, drift_by_period
from leadscore.monitoring.estimate import conversion_delay_cdf, estimate_performance
from leadscore.monitoring.labels import label_scores
from leadscore.monitoring.performance import realized_performance
from leadscore.monitoring.predlog import read_lead_scores, read_recent, read_served
from leadscore.service.holder import ServedModel
from leadscore.service.responses import (
    DashboardModel,
    DriftCell,
    DriftOverTime,
    EventMarker,
    Importance,
    LeadHistory,
    LeadScoreEntry,
    MonitorEntry,
    MonitoringSummary,
    PerformanceOverTime,
    PerformanceWeek,
    ScoreBin,
    ScoreSummary,
    Segment,
    SegmentPoint,
    SegmentSummary,
)
from leadscore.training.clusters import cluster_map, lead_clusters

RADAR = ("precision", "recall", "f1", "roc_auc", "accuracy")
TOP_FEATURES = 10
SCORE_BINS = 10          # bins of 10 points over the 0-100 score
MAX_RECENT = 50_000      # newest scores summarised at most, whatever the window
MAX_HISTORY = 50         # scores of one lead returned at most
MAX_PERFORMANCE = 200_000  # newest scores judged at most by the performance panel
MIN_LABELLED = 30        # matured leads (of both outcomes) a week needs for a realized ROC-AUC
DEFAULT_LABEL_WINDOW = 90.0
N_BOOT = 50              # bootstrap resamples of the realized ROC-AUC interval (not shown: kept cheap)
N_SIM = 100              # label draws per week of the estimated performance
MAX_DRIFT = 20_000       # newest scored leads whose input fields the drift panel reads at most
TOP_DRIFT = 15           # features in the heatmap at most (the most drifted)
MAX_SEGMENT = 5_000      # newest scored leads clustered at most
MAX_POINTS = 600         # leads drawn in the segments' scatter at most
MIN_PER_SEGMENT = 10     # leads per cluster needed on average before clustering
MARKED_EVENTS = ("activate", "rollback", "gate", "retrain", "challenger")


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


def label_window_days(meta: Mapping[str, Any]) -> float:
    """The model's label window (``snapshot.label_window_days`` of its metadata, else 90 days)."""
    window = _number((meta.get("snapshot") or {}).get("label_window_days"))
    return window if window is not None and window > 0 else DEFAULT_LABEL_WINDOW


def _when(value: Any) -> datetime | None:
    try:
        at = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _detail(event: Mapping[str, Any]) -> str | None:
    parts = [f"{k} {event[k]}" for k in ("decision", "action", "previous", "champion") if event.get(k)]
    return ", ".join(parts) or None


def event_markers(events: Iterable[Mapping[str, Any]], since: datetime) -> list[EventMarker]:
    """The registry's activations, rollbacks, gate decisions, challengers and retrain cycles at or after
    ``since``, oldest first."""
    markers = []
    for event in events:
        at = _when(event.get("at"))
        if at is None or at < since or event.get("event") not in MARKED_EVENTS:
            continue
        version = event.get("version") or event.get("challenger")
        markers.append(EventMarker(at=at, event=str(event["event"]), detail=_detail(event),
                                   version=None if version is None else str(version)))
    return markers


def _optional(value: Any) -> float | None:
    number = _number(value)
    return None if number is None else round(number, 6)


def _estimates(labelled: pd.DataFrame, *, window_days: float,
               now: pd.Timestamp) -> dict[tuple[str, str], dict[str, float | None]]:
    """Estimated conversion and ROC-AUC with their 95% intervals of each (version, week) that still has
    open leads (:func:`leadscore.monitoring.estimate.estimate_performance`)."""
    delay = conversion_delay_cdf(labelled, window_days=window_days, now=now)
    table = estimate_performance(labelled, now=now, by="week", delay=delay, n_sim=N_SIM)
    out = {}
    for row in table.to_dict("records"):
        if not row["open"]:
            continue
        out[(str(row["model_version"]), str(row["period"]))] = {
            f"est_{short}{end}": _optional(row.get(f"est_{name}{end}"))
            for short, name in (("conversion", "conversion_rate"), ("roc_auc", "roc_auc"))
            for end in ("", "_low", "_high")}
    return out


def performance_over_time(engine: sa.Engine, table: sa.Table, outcomes: pd.DataFrame,
                          events: Iterable[Mapping[str, Any]], *, version: str, weeks: int,
                          window_days: float, now: datetime,
                          all_versions: bool = False) -> PerformanceOverTime:
    """Per week of scoring: leads scored, matured labels, realized conversion and ROC-AUC of ``version``
    (every version with ``all_versions``), from the newest scores of the last ``weeks`` weeks."""
    since = now - timedelta(weeks=weeks)
    frame = read_served(engine, table, since=since, version=None if all_versions else version,
                        limit=MAX_PERFORMANCE + 1)
    truncated = len(frame) > MAX_PERFORMANCE
    frame = frame.head(MAX_PERFORMANCE)
    series: list[PerformanceWeek] = []
    if len(frame):
        labelled = label_scores(frame, outcomes, window_days=window_days, now=pd.Timestamp(now))
        table_ = realized_performance(labelled, by="week", min_labelled=MIN_LABELLED, n_boot=N_BOOT)
        estimated = _estimates(labelled, window_days=window_days, now=pd.Timestamp(now))
        for row in table_.to_dict("records"):
            series.append(PerformanceWeek(
                week=str(row["period"]), model_version=str(row["model_version"]), leads=int(row["leads"]),
                labelled=int(row["labelled"]), open=int(row["open"]), converted=int(row["converted"]),
                conversion=_optional(row.get("conversion_rate")), roc_auc=_optional(row.get("roc_auc")),
                note=str(row.get("note") or ""),
                **estimated.get((str(row["model_version"]), str(row["period"])), {})))
    return PerformanceOverTime(
        version=version, weeks=weeks, since=since, label_window_days=window_days, min_labelled=MIN_LABELLED,
        truncated=truncated, limit=MAX_PERFORMANCE, matured_weeks=sum(1 for w in series if w.labelled),
        series=series, events=event_markers(events, since))


GROUPS = {"drift": "drift", "score_drift": "score_drift", "performance": "performance",
          "estimated_performance": "performance"}


def monitoring_summary(states: list[CheckState], checked_at: datetime | None) -> MonitoringSummary:
    """The saved alert states grouped for the page (each group worst first, then by subject)."""
    groups: dict[str, list[MonitorEntry]] = {"drift": [], "score_drift": [], "performance": [], "other": []}
    order = {"alert": 0, "warn": 1, "ok": 2}
    for state in sorted(states, key=lambda s: (order.get(s.state, 3), s.check, s.model_version, s.subject)):
        value = _number(state.value)
        groups[GROUPS.get(state.check, "other")].append(MonitorEntry.from_record(state, value=value))
    counts: dict[str, int] = {}
    for state in states:
        counts[state.state] = counts.get(state.state, 0) + 1
    return MonitoringSummary(checked_at=checked_at, states=counts, **groups)


def drift_over_time(frame: pd.DataFrame, bundle: Any, *, version: str, weeks: int, since: datetime,
                    truncated: bool, thresholds: DriftThresholds,
                    ignore: tuple[str, ...] = ()) -> DriftOverTime:
    """PSI and state of every profiled feature and of the score, per week, of ``frame`` (served scores of
    ``version`` with their input fields, as :func:`~leadscore.monitoring.predlog.read_served` gives them);
    the :data:`TOP_DRIFT` most drifted features (by their highest weekly PSI) after the score."""
    def answer(periods: list[str], features: list[str], cells: list[DriftCell],
               note: str | None = None) -> DriftOverTime:
        return DriftOverTime(version=version, weeks=weeks, since=since, leads=len(frame), truncated=truncated,
                             limit=MAX_DRIFT, periods=periods, features=features, cells=cells, note=note)

    if frame.empty:
        return answer([], [], [], f"no leads scored by {version} in the last {weeks} week(s)")
    frame = frame.reset_index(drop=True)
    try:
        weekly = drift_by_period(frame, bundle, version, times=frame["scored_at"],
                                 probabilities=frame["probability"].to_numpy(float), by="week",
                                 thresholds=thresholds, ignore=ignore)
    except LeadscoreError as exc:
        return answer([], [], [], f"drift cannot be judged: {exc}")
    cells: list[DriftCell] = []
    worst: dict[str, float] = {}
    for week in weekly:
        for row in [week["score"], *week["features"]]:
            psi = _optional(row.get("psi"))
            cells.append(DriftCell(feature=str(row["feature"]), period=str(week["period"]), n=int(row["n"]),
                                   psi=psi, state=str(row["state"]), reason=str(row["reason"])))
            if row["feature"] != "(score)":
                worst[str(row["feature"])] = max(worst.get(str(row["feature"]), 0.0), psi or 0.0)
    features = ["(score)", *sorted(worst, key=lambda name: -worst[name])[:TOP_DRIFT]]
    shown = set(features)
    return answer([str(week["period"]) for week in weekly], features,
                  [cell for cell in cells if cell.feature in shown])


def _latest_per_lead(frame: pd.DataFrame) -> pd.DataFrame:
    """Each lead's newest row of ``frame`` (newest first); rows without a lead id are kept as they are."""
    named = frame["lead_id"].notna()
    return pd.concat([frame[named].drop_duplicates("lead_id", keep="first"), frame[~named]]) \
        .sort_values("scored_at", ascending=False, kind="stable").reset_index(drop=True)


def _labels(frame: pd.DataFrame, outcomes: pd.DataFrame, *, window_days: float, now: datetime) -> pd.Series:
    """Each row's matured label (1.0, 0.0, NaN while open or without a lead id), by its lead id."""
    named = frame[frame["lead_id"].notna()]
    if named.empty:
        return pd.Series(np.nan, index=frame.index)
    labelled = label_scores(named, outcomes, window_days=window_days, now=pd.Timestamp(now))
    by_lead = pd.Series(labelled["label"].to_numpy(float), index=labelled["lead_id"].astype(str))
    return frame["lead_id"].map(lambda lead: by_lead.get(str(lead), np.nan) if lead is not None else np.nan) \
        .astype(float)


def segment_summary(frame: pd.DataFrame, outcomes: pd.DataFrame, bundle: Any, *, version: str, days: int,
                    k: int, truncated: bool, window_days: float, now: datetime,
                    seed: int = 42) -> SegmentSummary:
    """k-means clusters (:func:`leadscore.training.clusters.lead_clusters`) of ``frame`` (served scores of
    ``version`` with their input fields, newest first), one row per lead (its newest score): size,
    realized conversion of the matured, mean probability, defining traits, and a scatter sample."""
    leads = _latest_per_lead(frame) if len(frame) else frame

    def answer(segments: list[Segment], points: list[SegmentPoint],
               note: str | None = None) -> SegmentSummary:
        return SegmentSummary(version=version, days=days, k=k, leads=len(leads), truncated=truncated,
                              limit=MAX_SEGMENT, label_window_days=window_days, segments=segments,
                              points=points, note=note)

    if len(leads) < MIN_PER_SEGMENT * k:
        return answer([], [], f"{len(leads)} lead(s) scored by {version} in the last {days} day(s): "
                              f"{MIN_PER_SEGMENT * k} are needed for {k} segments")
    try:
        features = prepare_features(leads, bundle.schema)
    except LeadscoreError as exc:
        return answer([], [], f"the logged leads cannot be segmented: {exc}")
    if not any(features[c].nunique() > 1 for c in bundle.schema.numeric_features if c in features):
        return answer([], [], "the logged leads have no numeric feature that varies: nothing to cluster on")
    clusters = lead_clusters(features, None, bundle.schema, k=k, seed=seed)
    label = _labels(leads, outcomes, window_days=window_days, now=now)
    probability = leads["probability"].to_numpy(float)
    traits = dict(zip(clusters.profile["cluster"], clusters.profile["defining_traits"], strict=True))
    segments = []
    for cluster in range(k):
        inside = clusters.labels == cluster
        if not inside.any():
            continue
        known = label[inside].dropna()
        segments.append(Segment(
            cluster=cluster, leads=int(inside.sum()), share=round(float(inside.mean()), 4),
            labelled=len(known), converted=int(known.sum()),
            conversion=round(float(known.mean()), 4) if len(known) else None,
            mean_probability=round(float(probability[inside].mean()), 4), traits=str(traits[cluster])))
    segments.sort(key=lambda s: -s.mean_probability)
    xy = cluster_map(clusters, features, seed=seed)
    drawn = np.random.default_rng(seed).permutation(len(leads))[:MAX_POINTS]
    points = [SegmentPoint(x=round(float(xy[i, 0]), 3), y=round(float(xy[i, 1]), 3),
                           cluster=int(clusters.labels[i])) for i in sorted(drawn)]
    return answer(segments, points)
