"""The relational CRM extract (``leads``, ``activities``, ``outcomes``) turned into one row per lead.

:func:`snapshot_table` is the one way snapshot rows are built: the ``features`` stage builds every lead's
row with its label and status, and batch scoring (``leadscore score --crm``) builds the open leads' rows
with :func:`open_lead_rows`, which calls it on the leads still open.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from leadscore.core.config import Params
from leadscore.core.exceptions import DataValidationError, InputFileError
from leadscore.data import snapshot
from leadscore.data.schema import TableSchema, infer_schema
from leadscore.data.tables import read_table

log = logging.getLogger(__name__)

CRM_TABLES = ("leads", "activities", "outcomes")
NOT_FEATURES = ("created_at", "snapshot_at", "status")


def load_crm(raw_dir: str | Path) -> dict[str, pd.DataFrame]:
    """Read ``leads``, ``activities`` and ``outcomes`` (Parquet or CSV) from ``raw_dir``."""
    raw_dir = Path(raw_dir)
    tables = {}
    for name in CRM_TABLES:
        found = [p for p in (raw_dir / f"{name}.parquet", raw_dir / f"{name}.csv") if p.exists()]
        if not found:
            raise InputFileError(f"no {name}.parquet or {name}.csv in {raw_dir}")
        tables[name] = read_table(found[0])
    return tables


def snapshot_table(tables: dict[str, pd.DataFrame], params: Params, *, as_of: pd.Timestamp | None = None,
                   keep_excluded: bool = True) -> pd.DataFrame:
    """Point-in-time row of every lead in ``tables["leads"]`` with its label and status as of ``as_of``
    (default: the end of the data).

    With ``keep_excluded`` the post-outcome columns of ``features.exclude`` stay in the table, so the
    leakage guard can show what they would do; the feature schema drops them (:func:`snapshot_schema`).
    """
    end = snapshot.data_end(tables) if as_of is None else as_of
    snap = snapshot.build_snapshot(
        tables["leads"], tables["activities"], snapshot_days=params.snapshot.snapshot_days,
        as_of=end, placeholders=params.features.placeholders,
        exclude=() if keep_excluded else params.features.exclude)
    return snapshot.attach_labels(snap, tables["outcomes"],
                                  label_window_days=params.snapshot.label_window_days, end=end)


def open_lead_rows(tables: dict[str, pd.DataFrame], params: Params, *,
                   as_of: pd.Timestamp | None = None) -> tuple[pd.DataFrame, pd.Timestamp]:
    """Rows of the leads open at ``as_of`` (default: the end of the data) and that time (naive UTC).

    Open, as the ``split`` stage splits them: created by ``as_of``, label window not yet closed, not
    converted by ``as_of``. Features are taken at ``created_at + snapshot_days``, or at ``as_of`` for
    younger leads, exactly as for training rows; post-outcome columns are dropped.
    """
    end = snapshot.data_end(tables) if as_of is None else pd.Timestamp(as_of)
    if end.tzinfo is not None:
        end = end.tz_convert("UTC").tz_localize(None)
    leads = tables["leads"]
    created = pd.to_datetime(leads["created_at"], errors="coerce")
    converted = leads["lead_id"].map(
        tables["outcomes"].set_index("lead_id")["converted_at"].pipe(pd.to_datetime, errors="coerce"))
    keep = (created <= end).to_numpy(bool) & ~(converted <= end).fillna(False).to_numpy(bool)
    snap = snapshot_table({**tables, "leads": leads.loc[keep]}, params, as_of=end, keep_excluded=False)
    rows = snap.loc[snap["status"] == "open"].drop(columns=["label", "status"]).reset_index(drop=True)
    return rows, end


def split_by_time(snapshots: pd.DataFrame, test_months: int) -> dict[str, pd.DataFrame]:
    """``train``/``test``: labelled leads, test = the last ``test_months`` of creation dates;
    ``open``: leads without a label yet (to be scored, never evaluated)."""
    labelled = snapshots[snapshots["status"] == "closed"]
    if labelled.empty:
        raise DataValidationError("no lead has a closed label window: the data span is too short")
    cutoff = labelled["created_at"].max() - pd.DateOffset(months=test_months)
    parts = {
        "train": labelled[labelled["created_at"] <= cutoff],
        "test": labelled[labelled["created_at"] > cutoff],
        "open": snapshots[snapshots["status"] == "open"],
    }
    for name in ("train", "test"):
        if parts[name]["label"].nunique() < 2:
            raise DataValidationError(f"the {name} period has only one class; change split.test_months")
    return {k: v.reset_index(drop=True) for k, v in parts.items()}


def snapshot_schema(train: pd.DataFrame, params: Params, *, keep_excluded: bool = False) -> TableSchema:
    """Feature schema of a snapshot table: everything but ids, times, labels and (unless
    ``keep_excluded``, for the leakage checks) the post-outcome columns of ``features.exclude``."""
    excluded = () if keep_excluded else params.features.exclude
    drop = [c for c in (*NOT_FEATURES, *excluded) if c in train.columns]
    schema = infer_schema(train, target="label", id_column="lead_id", time_column="created_at",
                          drop=drop, placeholders=params.features.placeholders)
    for name in excluded:
        if name in schema.dropped:
            schema.dropped[name] = "post-outcome column (features.exclude): never a feature"
    return schema
