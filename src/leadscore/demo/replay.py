"""Replay history as production: score the leads that came after a model's training data when they
became scorable, log them as the API would, and let their outcomes arrive on their real dates.

The replay feeds the monitoring store (prediction log + outcomes table) so that drift, realized and
estimated performance can be watched over time on data whose truth is known: the demo pipeline replays
the months after the champion's training window (``leadscore monitor replay``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from leadscore.core.exceptions import DataValidationError
from leadscore.monitoring.log_rows import input_fields, score_rows

SNAPSHOT_COLUMNS = ("lead_id", "created_at", "snapshot_at")


def replay_start(meta: Mapping[str, Any], snapshot_days: float) -> pd.Timestamp:
    """The first Monday on which every lead scorable is newer than the model's training data.

    Raises
    ------
    DataValidationError
        If the model does not record its training window.
    """
    window = meta.get("training_window") or []
    if len(window) != 2:
        raise DataValidationError("the model records no training window: give the replay a start date")
    ready = pd.Timestamp(window[1]).tz_localize(None) + pd.Timedelta(days=snapshot_days)
    return (ready.normalize() + pd.offsets.Week(weekday=0)).tz_localize("UTC")


def replay_leads(snapshots: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp, *,
                 snapshot_days: float) -> pd.DataFrame:
    """Leads whose snapshot (the moment they are scored) falls in ``[start, end)``, oldest first.
    Leads that converted before their snapshot are not scored, nor leads younger than ``snapshot_days``
    at the end of the data (their snapshot was cut short: production scores them later)."""
    missing = [c for c in SNAPSHOT_COLUMNS if c not in snapshots]
    if missing:
        raise DataValidationError(f"snapshots: missing column(s) {', '.join(missing)}")
    at = pd.to_datetime(snapshots["snapshot_at"], utc=True)
    created = pd.to_datetime(snapshots["created_at"], utc=True)
    complete = at - created >= pd.Timedelta(days=snapshot_days) - pd.Timedelta(seconds=1)
    keep = (at >= start) & (at < end) & complete
    if "status" in snapshots:
        keep &= snapshots["status"].ne("converted_before")
    return snapshots[keep].assign(snapshot_at=at[keep]).sort_values("snapshot_at", kind="stable")


def log_rows(leads: pd.DataFrame, scored: pd.DataFrame, inputs: list[str]) -> list[dict[str, Any]]:
    """Prediction-log rows (the API's shape) for replayed scores: one per lead, scored at its snapshot,
    in one request per week."""
    at: list[Any] = leads["snapshot_at"].dt.to_pydatetime().tolist()
    weeks: list[str] = leads["snapshot_at"].dt.tz_localize(None).dt.to_period("W-SUN").dt.start_time \
        .dt.strftime("%Y-%m-%d").tolist()
    return score_rows(scored.assign(lead_id=leads["lead_id"].astype(str).to_numpy()),
                      input_fields(leads[inputs]), [f"replay-{week}" for week in weeks], entry="replay",
                      scored_at=at)


def replay_outcomes(outcomes: pd.DataFrame, lead_ids: pd.Series, end: pd.Timestamp) -> list[dict[str, Any]]:
    """Conversions of the replayed leads that happened before ``end``, recorded on their real date."""
    at = pd.to_datetime(outcomes["converted_at"], utc=True)
    hit = outcomes["lead_id"].astype(str).isin(set(lead_ids.astype(str))) \
        & outcomes["converted"].astype(bool) & at.notna() & (at < end)
    times: list[Any] = at[hit].dt.to_pydatetime().tolist()
    return [{"lead_id": lead_id, "converted": True, "converted_at": when, "recorded_at": when}
            for lead_id, when in zip(outcomes.loc[hit, "lead_id"].astype(str).tolist(), times, strict=True)]
