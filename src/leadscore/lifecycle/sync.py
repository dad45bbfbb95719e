"""Rescore on change: leads whose profile or activities changed since the last committed high-water mark
are rescored and their scores written back onto the CRM, over and over with ``follow``.

The truth is the **high-water mark**, kept in the CRM database (table ``leadscore_sync_state``) and
committed in the same transaction as the last batch of scores it covers: a crash (``kill -9``) before
that commit leaves the old mark, and the next start rescores those leads again (write-back and log are
idempotent), so no change is ever missed across restarts. Changes are found by their *recorded* time
(``changed_at`` of the mapping: when the row was inserted or updated), never by the activity's own
time, so a call logged late with yesterday's timestamp is still seen. Each look re-reads an ``overlap``
before the mark, so a transaction that commits a little after a later one is not missed either; a lead
already rescored for the same change is not rescored again.

A wake-up (PostgreSQL ``LISTEN``, see :func:`install_notify`) only shortens the wait: the mark, not the
notification, decides what is rescored.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import sqlalchemy as sa

from leadscore.core.config import Params
from leadscore.core.database import UtcDateTime, first_line
from leadscore.core.exceptions import StoreError
from leadscore.data.crm_database import CrmDatabase
from leadscore.monitoring.log_rows import input_fields, insert_rows, score_rows
from leadscore.scoring.crm_leads import lead_rows, model_params
from leadscore.scoring.scorer import Scorer
from leadscore.scoring.writeback import ScoreWriteBack, create_tables

log = logging.getLogger(__name__)

STATE_TABLE = "leadscore_sync_state"
NOTIFY_CHANNEL = "leadscore_changes"


def state_table(metadata: sa.MetaData) -> sa.Table:
    """One row per sync (``name``): its committed high-water mark (naive UTC text, ISO 8601)."""
    return sa.Table(STATE_TABLE, metadata,
                    sa.Column("name", sa.String(64), primary_key=True),
                    sa.Column("mark", sa.String(40), nullable=False),
                    sa.Column("updated_at", UtcDateTime, nullable=False))


@dataclass
class SyncStats:
    """What one pass did."""

    changed: int = 0          # leads with a change in the window
    rescored: int = 0         # leads scored and written back
    repeated: int = 0         # changes already rescored by an earlier pass (the overlap)
    skipped: dict[str, int] = field(default_factory=dict)  # converted_before / closed / not found
    mark: pd.Timestamp | None = None
    seconds: float = 0.0


@dataclass
class CrmSync:
    """Rescore changed leads of ``db`` with the scorer ``scorer()`` gives (asked again each pass, so an
    activation is followed), write the scores back and log them.

    Parameters
    ----------
    params : settings (features: placeholders and exclusions); the snapshot settings are the model's.
    log_target : ``(engine, table)`` of the prediction log, or None to log nothing.
    as_of : the scoring instant of a pass (default: now, UTC).
    """

    db: CrmDatabase
    scorer: Callable[[], Scorer]
    writeback: ScoreWriteBack
    params: Params
    log_target: tuple[sa.Engine, sa.Table] | None = None
    name: str = "default"
    reasons: int = 3
    batch_size: int = 500
    overlap: timedelta = timedelta(seconds=5)
    as_of: Callable[[], pd.Timestamp] | None = None
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.state = state_table(sa.MetaData())
        assert self.writeback.engine is not None
        try:
            create_tables(self.writeback.engine, self.state.metadata)
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"cannot create {STATE_TABLE}: {first_line(exc)}") from exc
        self._done: dict[str, pd.Timestamp] = {}  # lead -> newest change already rescored (overlap)

    # --- the mark -----------------------------------------------------------------------------------

    def mark(self) -> pd.Timestamp | None:
        """The committed high-water mark (None before the first pass)."""
        assert self.writeback.engine is not None
        with self.writeback.engine.connect() as conn:
            text = conn.execute(sa.select(self.state.c.mark).where(self.state.c.name == self.name)).scalar()
        return None if text is None else pd.Timestamp(text)

    def start_at_newest(self) -> pd.Timestamp | None:
        """Set the mark to the newest change the CRM holds now, without rescoring anything (the leads'
        scores are already current, e.g. written by a batch run); returns that mark."""
        newest = self.db.newest_change()
        if newest is not None:
            self.writeback.write([], also=lambda conn: self._save_mark(conn, newest))
        return newest

    def _save_mark(self, conn: sa.Connection, mark: pd.Timestamp) -> None:
        values = {"mark": mark.isoformat(), "updated_at": datetime.now(UTC)}
        done = conn.execute(sa.update(self.state).where(self.state.c.name == self.name).values(values))
        if done.rowcount == 0:
            conn.execute(sa.insert(self.state).values(name=self.name, **values))

    # --- one pass -----------------------------------------------------------------------------------

    def run_once(self) -> SyncStats:
        """Rescore every lead changed since the mark (minus the overlap); commit the new mark with the
        last batch. Stops between batches when :attr:`stop` is set (the mark then stays where it was)."""
        began = time.perf_counter()
        stats = SyncStats()
        mark = self.mark()
        changes = self.db.changed_leads(None if mark is None else mark - self.overlap)
        stamps: dict[str, pd.Timestamp] = dict(changes.stamps)
        stats.changed = len(stamps)
        todo = [lead for lead, at in stamps.items() if self._done.get(lead) != at]
        stats.repeated = len(stamps) - len(todo)
        newest = changes.high_water if mark is None or (changes.high_water is not None
                                                         and changes.high_water > mark) else mark
        stats.mark = newest
        batches = list(_chunks(sorted(todo), self.batch_size)) or [[]]
        scorer = self.scorer()
        params = model_params(self.params, scorer)
        for number, ids in enumerate(batches, start=1):
            if self.stop.is_set() and number > 1:
                stats.mark = mark
                break
            last = number == len(batches)
            self._rescore(scorer, params, ids, stamps, stats,
                          commit_mark=newest if last and newest is not None and newest != mark else None)
        self._forget(newest)
        stats.seconds = time.perf_counter() - began
        return stats

    def _rescore(self, scorer: Scorer, params: Params, ids: list[str], stamps: dict[str, pd.Timestamp],
                 stats: SyncStats, *, commit_mark: pd.Timestamp | None) -> None:
        also = None if commit_mark is None else (lambda conn: self._save_mark(conn, commit_mark))
        if not ids:
            if also is not None:
                self.writeback.write([], also=also)
            return
        at = self.as_of() if self.as_of is not None else pd.Timestamp.now(tz="UTC").tz_localize(None)
        found = lead_rows(self.db, ids, params, as_of=at)
        if found.missing:
            stats.skipped["not found"] = stats.skipped.get("not found", 0) + len(found.missing)
        for status in found.status.values():
            if status != "open":
                stats.skipped[status] = stats.skipped.get(status, 0) + 1
        rows = found.open_rows()
        scores = scorer.score_frame(rows, reasons=self.reasons) if len(rows) else None
        records: list[dict[str, Any]] = []
        if scores is not None:
            scores = scores.assign(lead_id=rows["lead_id"].astype(str).to_numpy())
            if self.log_target is not None:
                engine, table = self.log_target
                # one log row per lead and change: a pass repeated after a crash adds nothing
                entries = [f"sync-{stamps[i].isoformat()}" for i in scores["lead_id"]]
                insert_rows(engine, table, score_rows(scores, input_fields(rows), f"sync-{self.name}",
                                                      entry=entries))
            records = [{str(k): v for k, v in r.items()} for r in scores.to_dict("records")]
        self.writeback.write(records, also=also)
        stats.rescored += len(records)
        self._done.update({i: stamps[i] for i in ids})

    def _forget(self, newest: pd.Timestamp | None) -> None:
        """Drop remembered changes older than the overlap: they cannot come back."""
        if newest is None:
            return
        horizon = newest - self.overlap
        self._done = {k: v for k, v in self._done.items() if v >= horizon}

    # --- follow -------------------------------------------------------------------------------------

    def follow(self, *, interval: float = 0.2, on_pass: Callable[[SyncStats], None] | None = None,
               wake: Callable[[float], None] | None = None) -> None:
        """Pass after pass until :attr:`stop` is set; between passes wait ``interval`` seconds, or until
        ``wake`` returns (a notification)."""
        while not self.stop.is_set():
            stats = self.run_once()
            if on_pass is not None:
                on_pass(stats)
            if stats.rescored or self.stop.is_set():
                continue
            if wake is not None:
                wake(interval)
            else:
                self.stop.wait(interval)


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def install_notify(engine: sa.Engine, tables: list[str]) -> list[str]:
    """PostgreSQL only: triggers that ``NOTIFY leadscore_changes`` on every insert or update of
    ``tables``, so ``sync --follow`` wakes at once instead of at its next poll. Returns the triggers."""
    if engine.dialect.name != "postgresql":
        raise StoreError(f"notifications need PostgreSQL; {engine.dialect.name} is polled instead")
    made = []
    with engine.begin() as conn:
        conn.execute(sa.text(
            "CREATE OR REPLACE FUNCTION leadscore_notify() RETURNS trigger AS $$ BEGIN "
            f"PERFORM pg_notify('{NOTIFY_CHANNEL}', TG_TABLE_NAME); RETURN NULL; END $$ LANGUAGE plpgsql"))
        for table in tables:
            schema, _, name = table.rpartition(".")
            trigger = f"leadscore_notify_{name}"
            qualified = f'"{schema}"."{name}"' if schema else f'"{name}"'
            conn.execute(sa.text(f'DROP TRIGGER IF EXISTS "{trigger}" ON {qualified}'))
            conn.execute(sa.text(f'CREATE TRIGGER "{trigger}" AFTER INSERT OR UPDATE ON {qualified} '
                                 "FOR EACH STATEMENT EXECUTE FUNCTION leadscore_notify()"))
            made.append(trigger)
    return made


def notification_waiter(engine: sa.Engine) -> Callable[[float], None] | None:
    """A ``wake`` for :meth:`CrmSync.follow`: waits for a PostgreSQL notification on
    ``leadscore_changes`` or the timeout; None for other databases (plain polling)."""
    if engine.dialect.name != "postgresql":
        return None
    import psycopg

    dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")

    def wait(timeout: float) -> None:
        for _ in conn.notifies(timeout=timeout, stop_after=1):
            pass
        # drain any further notifications already queued: one pass covers them all
        for _ in conn.notifies(timeout=0.0):
            pass

    return wait
