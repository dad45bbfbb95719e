"""Leads read from the CRM database by id, turned into the model's rows by the training feature code.

The rows come from :func:`leadscore.data.crm.snapshot_table` (``build_snapshot`` plus labels), the
function that built the training rows, fed by reads of just these leads; their snapshot time follows the
model's own snapshot settings (``created_at + snapshot_days``, or ``as_of`` for younger leads), so a
lead scored by id gets exactly the features it would get in a batch or in training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from leadscore.core.config import Params
from leadscore.data import crm

if TYPE_CHECKING:
    from leadscore.data.crm_database import CrmDatabase
    from leadscore.scoring.scorer import Scorer

OPEN = "open"
CONVERTED = "converted"
STATUS_NOTES = {
    CONVERTED: "this lead already converted (on {converted_at}): scored anyway, not a prediction "
               "monitoring will judge",
    "closed": "this lead's label window has closed without a conversion: scored anyway",
}


def model_params(params: Params, scorer: Scorer) -> Params:
    """``params`` with the snapshot settings the model was trained with (its metadata), when recorded."""
    snap = scorer.bundle.metadata.get("snapshot") or {}
    if not snap:
        return params
    return replace(params, snapshot=replace(
        params.snapshot, snapshot_days=snap.get("snapshot_days", params.snapshot.snapshot_days),
        label_window_days=snap.get("label_window_days", params.snapshot.label_window_days)))


def as_of_time(value: str | datetime | pd.Timestamp | None) -> pd.Timestamp:
    """The scoring instant as naive UTC: ``value`` (ISO text, tz-aware or naive UTC), or now."""
    stamp = pd.Timestamp(datetime.now(UTC) if value is None else value)
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp


@dataclass(frozen=True)
class LeadRows:
    """Feature rows of the leads found (``rows``: ``lead_id`` first), each lead's status (open: no
    outcome by the scoring instant and label window not closed, as batch scoring of open leads has it;
    converted; closed) and conversion time, and the ids not found."""

    rows: pd.DataFrame
    status: dict[str, str]
    converted_at: dict[str, pd.Timestamp]
    missing: list[str]

    def note(self, lead_id: str) -> str | None:
        """Why a lead's score is not an ordinary prediction (it has an outcome), or None."""
        template = STATUS_NOTES.get(self.status.get(lead_id, OPEN))
        if template is None:
            return None
        when = self.converted_at.get(lead_id)
        return template.format(converted_at="unknown date" if when is None else when.isoformat())

    def open_rows(self) -> pd.DataFrame:
        """The rows of open leads (no outcome, label window not closed)."""
        ids = [i for i, s in self.status.items() if s == OPEN]
        return self.rows[self.rows["lead_id"].astype(str).isin(ids)].reset_index(drop=True)


def lead_rows(db: CrmDatabase, lead_ids: Sequence[Any], params: Params, *,
              as_of: pd.Timestamp) -> LeadRows:
    """The rows of ``lead_ids`` as of ``as_of`` (naive UTC), read from ``db`` with pushed-down filters.

    Leads created after ``as_of`` count as not found. Post-outcome columns (``features.exclude``) are
    dropped.
    """
    wanted = [str(i) for i in lead_ids]
    tables = db.read_tables(wanted)
    leads = tables["leads"]
    created = pd.to_datetime(leads["created_at"], errors="coerce")
    tables = {**tables, "leads": leads.loc[(created <= as_of).to_numpy(bool)]}
    if tables["leads"].empty:
        return LeadRows(pd.DataFrame(columns=["lead_id"]), {}, {}, wanted)
    snap = crm.snapshot_table(tables, params, as_of=as_of, keep_excluded=False)
    ids = snap["lead_id"].astype(str).tolist()
    outcomes = tables["outcomes"]
    converted = pd.to_datetime(outcomes["converted_at"], errors="coerce")
    when = dict(zip(outcomes["lead_id"].astype(str), converted, strict=True))
    found = set(ids)
    status = dict(zip(ids, snap["status"].astype(str), strict=True))
    for lead in ids:  # converted by the scoring instant, before or after its snapshot: has an outcome
        if lead in when and not pd.isna(when[lead]) and when[lead] <= as_of:
            status[lead] = CONVERTED
    return LeadRows(
        rows=snap.drop(columns=["label", "status"]).reset_index(drop=True),
        status=status,
        converted_at={i: when[i] for i in ids if i in when and not pd.isna(when[i])},
        missing=[i for i in wanted if i not in found])
