"""The prediction log's rows, built in one place: one converter for the JSON values they hold, one
builder for rows of scored leads, and the idempotent insert that batch runs, shadow scoring, CRM sync and
the demo replay use (the API's rows go through the journal of :mod:`leadscore.monitoring.predlog`).

A row: ``request_id``, ``lead_id``, ``model_version``, ``probability``, ``score``, ``tier``, ``inputs``
(the lead's fields, JSON), ``outputs`` (the answer, JSON; a challenger's shadow rows carry
``shadow: true`` and the champion's version), ``scored_at`` and, for rows written here, the unique
``entry`` key that makes a re-run insert only what is missing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from leadscore.core.database import first_line
from leadscore.core.exceptions import StoreError
from leadscore.monitoring.journal import ENTRY

CHUNK = 2_000  # rows per INSERT statement


def json_value(value: Any) -> Any:
    """One value as the prediction log's JSON holds it: NaN and NaT as None, times as ISO 8601 text,
    NumPy scalars as Python ones.

    Examples
    --------
    >>> json_value(np.float64("nan")), json_value(np.int64(3)), json_value(pd.Timestamp("2026-01-02"))
    (None, 3, '2026-01-02T00:00:00')
    """
    if value is None or value is pd.NaT or (isinstance(value, float | np.floating) and np.isnan(value)):
        return None
    if isinstance(value, datetime):  # pd.Timestamp included
        return value.isoformat()
    return value.item() if isinstance(value, np.generic) else value


def input_fields(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """Each row's fields as the log's ``inputs`` JSON."""
    return [{str(k): json_value(v) for k, v in r.items()} for r in rows.astype(object).to_dict("records")]


def score_rows(scores: pd.DataFrame, inputs: Sequence[dict[str, Any]], request_id: str | Sequence[str], *,
               champion: str | None = None, entry: str | Sequence[str] | None = None,
               scored_at: Sequence[datetime] | None = None) -> list[dict[str, Any]]:
    """Prediction-log rows of one version's ``score_frame`` output.

    Parameters
    ----------
    inputs : each lead's fields (:func:`input_fields`).
    request_id : one id for all rows, or one per row.
    champion : given, these are a challenger's shadow rows (no action or reasons; ``outputs.shadow``).
    entry : the prefix of each row's unique entry key (``{entry}:{version}:{lead}``), one for all rows or
        one per row; default the request id.
    scored_at : when each lead was scored (default: the scores' ``scored_at``).
    """
    records = scores.to_dict("records")
    ids = [request_id] * len(records) if isinstance(request_id, str) else list(request_id)
    keys = ids if entry is None else [entry] * len(records) if isinstance(entry, str) else list(entry)
    out = []
    for i, (record, fields) in enumerate(zip(records, inputs, strict=True)):
        at = pd.Timestamp(record["scored_at"] if scored_at is None else scored_at[i]).to_pydatetime()
        outputs: dict[str, Any] = {"probability": float(record["probability"]), "score": int(record["score"]),
                                   "tier": record["tier"]}
        if champion is None:
            reasons = record.get("reasons") or "{}"
            outputs.update(action=record.get("action"),
                           reasons=json.loads(reasons) if isinstance(reasons, str) else reasons)
        else:
            outputs.update(shadow=True, champion=champion)
        version, lead = str(record["model_version"]), str(record["lead_id"])
        out.append({"request_id": ids[i], "lead_id": lead, "model_version": version,
                    "probability": outputs["probability"], "score": outputs["score"], "tier": record["tier"],
                    "inputs": fields, "outputs": outputs, "scored_at": at,
                    ENTRY: f"{keys[i]}:{version}:{lead}"})
    return out


def insert_rows(engine: sa.Engine, table: sa.Table, rows: list[dict[str, Any]]) -> int:
    """Insert log rows in one transaction; a row already there (same entry) is kept, so a run can be
    repeated or resumed without duplicates.

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
        raise StoreError(f"cannot write to the prediction log: {first_line(exc)}") from exc
    return len(rows)
