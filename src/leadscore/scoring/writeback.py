"""Scores written back into the CRM database: the lead's current score where sales works.

One row per lead in ``lead_scores`` (current score, probability, tier, action, confidence, reasons,
model version, scored_at), upserted; and, when the CRM mapping names them, columns of the lead table
itself (e.g. ``score__c``, ``tier__c``). Both are written in **one transaction** per batch, so after a
crash (``kill -9``) every lead's row and columns hold one model version's answer, never half of one.
A row never goes back in time: an upsert older than the stored ``scored_at`` leaves the row as it is.
The history of every score stays in the prediction log.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite

from leadscore.core.database import UtcDateTime, first_line, make_engine, safe_url
from leadscore.core.exceptions import ConfigError, StoreError
from leadscore.data.mapping import WRITE_BACK_FIELDS  # what a lead-table column may receive

log = logging.getLogger(__name__)

WRITE_BACK_TABLE = "lead_scores"
_COLUMNS = ("lead_id", "score", "probability", "tier", "action", "confidence", "reasons", "model_version",
            "scored_at")


def create_tables(engine: sa.Engine, metadata: sa.MetaData, attempts: int = 3) -> None:
    """``metadata``'s tables, created if absent; safe when several processes (API workers) race to
    create them: the one that loses finds them made by the other."""
    for attempt in range(attempts):
        try:
            metadata.create_all(engine, checkfirst=True)
            return
        except (sa.exc.IntegrityError, sa.exc.ProgrammingError, sa.exc.OperationalError) as exc:
            text = str(exc).lower()
            if attempt == attempts - 1 or not ("exist" in text or "duplicate" in text):
                raise


def score_table(metadata: sa.MetaData, name: str = WRITE_BACK_TABLE) -> sa.Table:
    """The ``lead_scores`` table: one row per lead, its current score."""
    schema, _, table = name.rpartition(".")
    return sa.Table(
        table, metadata,
        sa.Column("lead_id", sa.String(64), primary_key=True),
        sa.Column("score", sa.Integer, nullable=False),
        sa.Column("probability", sa.Float(precision=53), nullable=False),
        sa.Column("tier", sa.String(64), nullable=False),
        sa.Column("action", sa.Text),
        sa.Column("confidence", sa.Float(precision=53)),
        sa.Column("reasons", sa.Text),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("scored_at", UtcDateTime, nullable=False, index=True),
        schema=schema or None,
    )


def _reasons_text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), default=str)


def _stamp(value: Any) -> datetime:
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.to_pydatetime()


def score_records(scores: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows of ``lead_scores`` from scorer results (API answers or ``score_frame`` records)."""
    out = []
    for r in scores:
        confidence = r.get("confidence")
        out.append({
            "lead_id": str(r["lead_id"]), "score": int(r["score"]), "probability": float(r["probability"]),
            "tier": str(r["tier"]), "action": r.get("action"),
            "confidence": None if confidence is None or pd.isna(confidence) else float(confidence),
            "reasons": _reasons_text(r.get("reasons")), "model_version": str(r["model_version"]),
            "scored_at": _stamp(r["scored_at"])})
    return out


@dataclass
class ScoreWriteBack:
    """Writes current scores into a CRM database (``lead_scores`` and mapped lead columns).

    Parameters
    ----------
    url : the CRM database (SQLite, PostgreSQL, MariaDB/MySQL).
    table : the score table, created if missing (``schema.table`` allowed).
    lead_table, lead_id_column : the CRM's lead table and its id column (for ``lead_columns``).
    lead_columns : score field -> column of the lead table, e.g. ``{"score": "score__c"}``.

    Raises
    ------
    ConfigError
        If ``lead_columns`` names a field that is not a score field.
    StoreError
        If the database cannot be reached, ``table`` exists with other columns, or a mapped lead column
        does not exist.
    """

    url: str
    table: str = WRITE_BACK_TABLE
    lead_table: str | None = None
    lead_id_column: str | None = None
    lead_columns: Mapping[str, str] = field(default_factory=dict)
    engine: sa.Engine | None = None

    def __post_init__(self) -> None:
        unknown = sorted(set(self.lead_columns) - set(WRITE_BACK_FIELDS))
        if unknown:
            raise ConfigError(f"write_back: unknown score field(s) {', '.join(unknown)}; expected some of "
                              f"{', '.join(WRITE_BACK_FIELDS)}")
        if self.lead_columns and not (self.lead_table and self.lead_id_column):
            raise ConfigError("write_back: lead columns need the lead table and its id column")
        self.engine = self.engine or make_engine(self.url)
        self.scores = score_table(sa.MetaData(), self.table)
        self._leads: sa.Table | None = None
        try:
            self._prepare()
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"cannot prepare score write-back in {safe_url(self.url)}: "
                             f"{first_line(exc)}") from exc

    def _prepare(self) -> None:
        assert self.engine is not None
        inspector = sa.inspect(self.engine)
        schema, name = self.scores.schema, self.scores.name
        if inspector.has_table(name, schema=schema):
            have = {c["name"] for c in inspector.get_columns(name, schema=schema)}
            if have != set(_COLUMNS):
                raise StoreError(
                    f"table {self.table} in {safe_url(self.url)} exists with other columns "
                    f"({', '.join(sorted(have))}): it is not a current-score table; name another with "
                    "--scores-table")
        else:
            create_tables(self.engine, self.scores.metadata)
        if self.lead_columns:
            assert self.lead_table and self.lead_id_column
            lschema, _, lname = self.lead_table.rpartition(".")
            have = {c["name"] for c in inspector.get_columns(lname, schema=lschema or None)}
            missing = [c for c in (self.lead_id_column, *self.lead_columns.values()) if c not in have]
            if missing:
                raise StoreError(f"write_back: table {self.lead_table} has no column {missing[0]} "
                                 f"(add it, or remove it from the mapping's leads.write_back)")
            self._leads = sa.Table(lname, sa.MetaData(), autoload_with=self.engine, schema=lschema or None)

    def _upsert(self, dialect: str) -> sa.Insert:
        updated = [c for c in _COLUMNS if c != "lead_id"]
        if dialect in ("mysql", "mariadb"):
            mine = mysql.insert(self.scores)
            newer = sa.text("VALUES(scored_at) >= scored_at")
            return mine.on_duplicate_key_update(
                {c: sa.func.IF(newer, mine.inserted[c], self.scores.c[c]) for c in updated})
        insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(self.scores)
        return insert.on_conflict_do_update(
            index_elements=["lead_id"], set_={c: insert.excluded[c] for c in updated},
            where=insert.excluded.scored_at >= self.scores.c.scored_at)

    def write(self, scores: Iterable[Mapping[str, Any]], *,
              also: Callable[[sa.Connection], None] | None = None) -> int:
        """Upsert each lead's current score (and its mapped lead columns) in one transaction; ``also``
        runs inside that transaction (e.g. to commit a sync's high-water mark with the scores).

        Raises
        ------
        StoreError
            If the database refuses the write (nothing of it is kept).
        """
        records = score_records(scores)
        assert self.engine is not None
        try:
            with self.engine.begin() as conn:
                if records:
                    conn.execute(self._upsert(self.engine.dialect.name), records)
                    self._write_lead_columns(conn, records)
                if also is not None:
                    also(conn)
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"cannot write scores back to {safe_url(self.url)}: {first_line(exc)}") from exc
        return len(records)

    def _write_lead_columns(self, conn: sa.Connection, records: list[dict[str, Any]]) -> None:
        if self._leads is None:
            return
        assert self.lead_id_column is not None
        leads = self._leads
        key = leads.c[self.lead_id_column]
        mapped = self.lead_columns.items()
        values: dict[str, Any] = {column: sa.bindparam(f"_{name}") for name, column in mapped}
        statement = sa.update(leads).where(key == sa.bindparam("_lead")).values(values)
        naive = self.engine is not None and self.engine.dialect.name != "postgresql"
        rows = []
        for r in records:
            row = {"_lead": r["lead_id"]}
            for name in self.lead_columns:
                value = r[name]
                if name == "scored_at" and naive:
                    value = value.astimezone(UTC).replace(tzinfo=None)
                row[f"_{name}"] = value
            rows.append(row)
        conn.execute(statement, rows)

    def read(self, lead_ids: Iterable[str] | None = None) -> pd.DataFrame:
        """The stored current scores (all, or of ``lead_ids``)."""
        assert self.engine is not None
        query = sa.select(self.scores)
        if lead_ids is not None:
            query = query.where(self.scores.c.lead_id.in_([str(i) for i in lead_ids]))
        with self.engine.connect() as conn:
            return pd.DataFrame(conn.execute(query).mappings().all(), columns=list(_COLUMNS))

    def close(self) -> None:
        if self.engine is not None:
            self.engine.dispose()
