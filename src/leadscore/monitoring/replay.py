"""Replay history as production: score the leads that came after a model's training data when they
became scorable, log them as the API would, and let their outcomes arrive on their real dates.

The replay feeds the monitoring store (prediction log + outcomes table) so that drift, realized and
estimated performance can be watched over time on data whose truth is known: the demo pipeline replays
the months after the champion's training window (``leadscore monitor replay``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from leadscore.core.exceptions import DataValidationError, StoreError
from leadscore.monitoring.journal import ENTRY

SNAPSHOT_COLUMNS = ("lead_id", "created_at", "snapshot_at")
CHUNK = 2_000


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


def json_value(value: Any) -> Any:
    """One input field as the prediction log's JSON holds it: NaN and NaT as None, times as ISO 8601
    text, NumPy scalars as Python ones."""
    if value is None or value is pd.NaT or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, datetime):  # pd.Timestamp included
        return value.isoformat()
    return value.item() if isinstance(value, np.generic) else value


def log_rows(leads: pd.DataFrame, scored: pd.DataFrame, inputs: list[str]) -> list[dict[str, Any]]:
    """Prediction-log rows (the API's shape) for replayed scores: one per lead, scored at its snapshot,
    in one request per week."""
    records = leads[inputs].astype(object).to_dict("records")
    at: list[Any] = leads["snapshot_at"].dt.to_pydatetime().tolist()
    weeks: list[str] = leads["snapshot_at"].dt.tz_localize(None).dt.to_period("W-SUN").dt.start_time \
        .dt.strftime("%Y-%m-%d").tolist()
    ids: list[str] = leads["lead_id"].astype(str).tolist()
    probability: list[float] = scored["probability"].astype(float).tolist()
    score: list[int] = scored["score"].astype(int).tolist()
    version: list[str] = scored["model_version"].astype(str).tolist()
    tier, action, reasons = (scored[c].tolist() for c in ("tier", "action", "reasons"))
    return [{"request_id": f"replay-{weeks[i]}", "lead_id": ids[i], "model_version": version[i],
             "probability": probability[i], "score": score[i], "tier": tier[i],
             "inputs": {k: json_value(v) for k, v in fields.items()},
             "outputs": {"probability": probability[i], "score": score[i], "tier": tier[i],
                         "action": action[i], "reasons": json.loads(reasons[i])},
             "scored_at": at[i], ENTRY: f"replay:{version[i]}:{ids[i]}"}
            for i, fields in enumerate(records)]


def write_log(engine: sa.Engine, table: sa.Table, rows: list[dict[str, Any]]) -> int:
    """Insert log rows; a row already there (same entry) is kept, so a replay can be run again.

    Raises
    ------
    StoreError
        If the database refuses the rows.
    """
    insert = (postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert)(table)
    statement = insert.on_conflict_do_nothing(index_elements=[ENTRY])
    try:
        with engine.begin() as conn:
            for start in range(0, len(rows), CHUNK):
                conn.execute(statement, rows[start:start + CHUNK])
    except sa.exc.SQLAlchemyError as exc:
        raise StoreError(f"cannot write the replayed scores: "
                         f"{str(getattr(exc, 'orig', exc)).strip().splitlines()[0]}") from exc
    return len(rows)


def replay_outcomes(outcomes: pd.DataFrame, lead_ids: pd.Series, end: pd.Timestamp) -> list[dict[str, Any]]:
    """Conversions of the replayed leads that happened before ``end``, recorded on their real date."""
    at = pd.to_datetime(outcomes["converted_at"], utc=True)
    hit = outcomes["lead_id"].astype(str).isin(set(lead_ids.astype(str))) \
        & outcomes["converted"].astype(bool) & at.notna() & (at < end)
    times: list[Any] = at[hit].dt.to_pydatetime().tolist()
    return [{"lead_id": lead_id, "converted": True, "converted_at": when, "recorded_at": when}
            for lead_id, when in zip(outcomes.loc[hit, "lead_id"].astype(str).tolist(), times, strict=True)]
