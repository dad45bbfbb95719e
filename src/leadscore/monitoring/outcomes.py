"""Outcomes: what became of each lead, one row per lead in the store's outcomes table.

They arrive one at a time through ``POST /v1/outcomes`` or in bulk from a CRM export or query
(``leadscore outcomes import``). Either way a lead's row is inserted or replaced (upsert), so importing
the same file twice leaves the table as it was. Rows that cannot be read are returned with their reason,
never dropped: the CLI writes them to a rejects file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from leadscore.core.exceptions import DataValidationError, StoreError
from leadscore.data.tables import NEGATIVE_TOKENS, POSITIVE_TOKENS

CHUNK = 1000
COLUMNS = ("lead_id", "converted", "converted_at")


class OutcomeStore:
    """Actual outcomes per lead, one row each: recording a lead again replaces its row (upsert)."""

    def __init__(self, engine: sa.Engine, table: sa.Table) -> None:
        self.engine, self.table = engine, table

    def _upsert(self) -> Any:
        insert = postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert
        statement = insert(self.table)
        return statement.on_conflict_do_update(
            index_elements=["lead_id"],
            set_={k: statement.excluded[k] for k in ("converted", "converted_at", "recorded_at")})

    def record(self, lead_id: str, converted: bool, converted_at: datetime | None) -> dict[str, Any]:
        """Insert or replace the outcome of ``lead_id``; returns the stored row.

        Raises
        ------
        StoreError
            If the database cannot be written.
        """
        when = None if converted_at is None else converted_at.astimezone(UTC)
        row: dict[str, Any] = {"lead_id": lead_id, "converted": converted, "converted_at": when,
                               "recorded_at": datetime.now(UTC)}
        self.record_many([row], what=f"the outcome of lead {lead_id!r}")
        return row

    def record_many(self, rows: Iterable[Mapping[str, Any]], *, what: str = "outcomes") -> int:
        """Upsert ``rows`` (lead_id, converted, converted_at[, recorded_at]) in one transaction; their
        number. All or nothing: on an error no row of the call is stored."""
        now = datetime.now(UTC)
        batch = [{"recorded_at": now, **row} for row in rows]
        try:
            with self.engine.begin() as conn:
                for start in range(0, len(batch), CHUNK):
                    conn.execute(self._upsert(), batch[start:start + CHUNK])
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"cannot record {what}: "
                             f"{str(getattr(exc, 'orig', exc)).strip().splitlines()[0]}") from exc
        return len(batch)

    def get(self, lead_id: str) -> Mapping[str, Any] | None:
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(self.table).where(self.table.c.lead_id == lead_id)).first()
        return None if found is None else dict(found._mapping)

    def frame(self, leads: sa.Select[Any] | None = None) -> pd.DataFrame:
        """Every outcome (of the lead ids ``leads`` selects, when given) as a DataFrame (lead_id, converted,
        converted_at, recorded_at)."""
        query = sa.select(self.table)
        if leads is not None:
            query = query.where(self.table.c.lead_id.in_(leads.scalar_subquery()))
        with self.engine.connect() as conn:
            frame = pd.read_sql(query, conn)
        for column in ("converted_at", "recorded_at"):
            frame[column] = pd.to_datetime(frame[column], utc=True)
        return frame.astype({"lead_id": str, "converted": bool})


@dataclass
class ParsedOutcomes:
    rows: list[dict[str, Any]]     # ready for :meth:`OutcomeStore.record_many`
    rejected: pd.DataFrame         # the input rows that could not be read, with a ``reason`` column
    superseded: int                # earlier rows for a lead that appears again later in the input


def _converted(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    text = "" if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)
    folded = text.strip().casefold()
    if folded.endswith(".0"):  # 1.0 / 0.0 from a float column
        folded = folded[:-2]
    return True if folded in POSITIVE_TOKENS else False if folded in NEGATIVE_TOKENS else None


def parse_outcomes(frame: pd.DataFrame, *, lead_id: str = "lead_id", converted: str = "converted",
                   converted_at: str | None = "converted_at") -> ParsedOutcomes:
    """Read outcome rows: a non-empty lead id, a yes/no outcome (1/0, true/false, won/lost...), and a
    conversion time for converted leads when the column exists (none for leads that did not convert).

    Raises
    ------
    DataValidationError
        If the lead id or outcome column is missing.
    """
    for name in (lead_id, converted):
        if name not in frame.columns:
            raise DataValidationError(f"outcomes: column '{name}' not found; columns are: "
                                      f"{', '.join(map(str, frame.columns[:20]))}")
    has_time = converted_at is not None and converted_at in frame.columns
    ids = frame[lead_id].astype("object").map(lambda v: "" if v is None or pd.isna(v) else str(v).strip())
    outcome = frame[converted].map(_converted)
    when = pd.to_datetime(frame[converted_at], errors="coerce", utc=True, format="mixed") if has_time \
        else pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns, UTC]")
    given = frame[converted_at].notna() & frame[converted_at].astype(str).str.strip().ne("") if has_time \
        else pd.Series(False, index=frame.index)
    reason = pd.Series("", index=frame.index, dtype=object)
    reason[ids.eq("")] = "empty lead id"
    reason[reason.eq("") & outcome.isna()] = f"'{converted}' is not yes/no, 1/0 or true/false"
    reason[reason.eq("") & given & when.isna()] = f"'{converted_at}' is not a date"
    reason[reason.eq("") & given & outcome.eq(False)] = \
        f"'{converted_at}' given for a lead that did not convert"
    good = reason.eq("")
    kept = pd.DataFrame({"lead_id": ids[good], "converted": outcome[good].astype(bool),
                         "converted_at": when[good]})
    last = kept.drop_duplicates("lead_id", keep="last")
    times = [None if pd.isna(t) else pd.Timestamp(t).to_pydatetime() for t in last["converted_at"]]
    rows = [{"lead_id": lead, "converted": bool(flag), "converted_at": t}
            for lead, flag, t in zip(last["lead_id"], last["converted"], times, strict=True)]
    return ParsedOutcomes(rows, frame.loc[~good].assign(reason=reason[~good]), len(kept) - len(last))
