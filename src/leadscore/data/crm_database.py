"""Read the CRM where it lives: a SQL database (SQLite, PostgreSQL, MariaDB/MySQL) seen through a mapping.

SQL only selects and filters (by lead id, by change time); every feature is still computed by
:func:`leadscore.data.snapshot.build_snapshot` on the frames returned here, which have exactly the
columns and dtypes of the Parquet extract. There is one feature definition, so training rows, a batch
and one lead read by id get the same values.

>>> from leadscore.demo import generate_crm
>>> from leadscore.demo.database import write_crm_database
>>> _ = write_crm_database(generate_crm(n_leads=50, seed=1), "sqlite://")  # doctest: +SKIP
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from leadscore.core.database import first_line, make_engine, safe_url
from leadscore.core.exceptions import MappingError, StoreError
from leadscore.data import crm_values as cv
from leadscore.data.mapping import DEMO_MAPPING, IGNORE, CrmMapping, activity_type_map, direction_map

IN_CHUNK = 2000  # lead ids per IN (...) list
_LABELS = ("leads", "activities", "outcomes")


@dataclass(frozen=True)
class ChangedLeads:
    """Leads whose row or activities changed in the window, and the newest change time seen (naive
    UTC; ``None`` if nothing changed): the next high-water mark."""

    lead_ids: tuple[str, ...]
    high_water: pd.Timestamp | None
    stamps: Mapping[str, pd.Timestamp] = field(default_factory=dict)  # each lead's newest change


@dataclass(frozen=True)
class _Col:
    name: str  # leadscore's name
    column: str  # the CRM's
    kind: str  # time, int, number, bool, text
    aware: bool = False


@dataclass(frozen=True)
class _Table:
    label: str  # leads, activities, outcomes
    name: str
    cols: tuple[_Col, ...]
    ref: Any  # sa.TableClause
    key: str  # column holding the lead id
    changed: str | None = None  # change-tracking column
    changed_aware: bool = False

    def column(self, name: str) -> Any:
        return self.ref.c[name]

    def select(self) -> Any:
        return sa.select(*(self.ref.c[c.column] for c in self.cols))


@dataclass(frozen=True)
class _Plan:
    leads: _Table
    activities: _Table
    outcomes: _Table
    statements: dict[str, Any]
    id_is_int: bool


def _kind(type_: Any) -> str:
    if isinstance(type_, sa.DateTime | sa.Date):
        return "time"
    if isinstance(type_, sa.Boolean):
        return "bool"
    if isinstance(type_, sa.Integer):
        return "int"
    if isinstance(type_, sa.Numeric | sa.Float):
        return "number"
    return "text"


def _hint(name: str, available: Iterable[str]) -> str:
    names = list(available)
    folded = [n for n in names if n.casefold() == name.casefold()]
    close = folded or difflib.get_close_matches(name, names, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


class CrmDatabase:
    """The CRM tables of a database, read in leadscore's names and dtypes through ``mapping``.

    Parameters
    ----------
    url : ``sqlite:///crm.db`` (or a path ending ``.db``), ``postgresql+psycopg://user@host/db``,
        ``mysql+pymysql://user@host/db`` (MariaDB or MySQL).
    mapping : which tables and columns hold leadscore's concepts (default: the demo schema).

    Nothing is read until the first call; the mapping is then checked against the live schema once
    (:meth:`check`), and a mismatch raises :class:`MappingError` before any row is read.
    """

    def __init__(self, url: str, mapping: CrmMapping = DEMO_MAPPING) -> None:
        self.url = safe_url(url)
        self.mapping = mapping
        self.engine = make_engine(url)
        if self.engine.dialect.name in ("mysql", "mariadb"):
            sa.event.listen(self.engine, "connect", _mysql_utc)
        self._plan: _Plan | None = None

    def __repr__(self) -> str:
        return f"CrmDatabase({self.url!r})"

    def __enter__(self) -> CrmDatabase:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections."""
        self.engine.dispose()

    # --- schema -------------------------------------------------------------------------------------

    def check(self, *, values: bool = True) -> None:
        """Check the mapping against the live database: every mapped table and column exists, and (with
        ``values``) every activity type and direction value in the table maps to something.

        Raises
        ------
        MappingError
            One line naming the table and column (and the value) that does not match.
        StoreError
            If the database cannot be reached.
        """
        plan = self._prepare()
        if not values:
            return
        acts = plan.activities
        with self._connect() as conn:
            for name in ("activity_type", "direction"):
                col = next((c for c in acts.cols if c.name == name), None)
                if col is not None:
                    found = conn.execute(sa.select(acts.column(col.column)).distinct()).scalars().all()
                    self._map_values(name, found)

    def _connect(self) -> sa.Connection:
        try:
            return self.engine.connect()
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"cannot connect to {self.url}: {first_line(exc)}") from exc

    def _prepare(self) -> _Plan:
        if self._plan is None:
            try:
                inspector = sa.inspect(self.engine)
                tables = {label: self._reflect(inspector, label) for label in _LABELS}
            except sa.exc.OperationalError as exc:
                raise StoreError(f"cannot read the schema of {self.url}: {first_line(exc)}") from exc
            statuses = dict(self.mapping.outcomes.status_values)
            self._plan = _Plan(**tables, statements=_statements(tables, statuses),
                               id_is_int=tables["leads"].cols[0].kind == "int")
        return self._plan

    def _wanted(self, label: str) -> list[tuple[str, str, str]]:
        """(leadscore name, CRM column, mapping key) of one table, in canonical order."""
        m = self.mapping
        if label == "leads":
            return [("lead_id", m.leads.id, "leads.id"),
                    ("created_at", m.leads.created_at, "leads.created_at"),
                    *((k, v, f"leads.fields.{k}") for k, v in m.leads.fields.items())]
        if label == "activities":
            a = m.activities
            named = [("activity_id", a.id), ("lead_id", a.lead_id), ("timestamp", a.timestamp),
                     ("activity_type", a.type), ("direction", a.direction), ("duration_sec", a.duration_sec),
                     ("page", a.page), ("note", a.note)]
            keys = {"activity_id": "id", "activity_type": "type"}
            return [(n, c, f"activities.{keys.get(n, n)}") for n, c in named if c is not None]
        o = m.outcomes
        flag = [("converted", o.converted, "outcomes.converted")] if o.converted else \
            [("status", o.status, "outcomes.status")] if o.status else []
        return [("lead_id", o.lead_id, "outcomes.lead_id"), *flag,
                ("converted_at", o.converted_at, "outcomes.converted_at")]

    def _reflect(self, inspector: Any, label: str) -> _Table:
        section = getattr(self.mapping, label)
        schema, _, name = str(section.table).rpartition(".")
        if schema and schema not in inspector.get_schema_names():
            needed = ", ".join(c for _, c, _ in self._wanted(label))
            raise MappingError(f"mapping: table {section.table!r} ({label}.table) not found in {self.url}: "
                               f"no schema {schema!r} (needed for columns {needed})")
        if not inspector.has_table(name, schema=schema or None):
            known = inspector.get_table_names(schema=schema or None) + \
                inspector.get_view_names(schema=schema or None)
            needed = ", ".join(c for _, c, _ in self._wanted(label))
            raise MappingError(f"mapping: table {section.table!r} ({label}.table) not found in {self.url} "
                               f"(needed for columns {needed}){_hint(name, known)}")
        reflected = {c["name"]: c["type"] for c in inspector.get_columns(name, schema=schema or None)}
        wanted = self._wanted(label)
        changed = [section.changed_at] if section.changed_at else []
        for _, column, key in [*wanted, *((c, c, f"{label}.changed_at") for c in changed)]:
            if column not in reflected:
                raise MappingError(f"mapping: column {column!r} not found in table {section.table!r} "
                                   f"({key}){_hint(column, reflected)}")
        times = {"created_at", "timestamp", "converted_at"}
        cols = tuple(_Col(n, c, "time" if n in times else _kind(reflected[c]),
                          bool(getattr(reflected[c], "timezone", False))) for n, c, _ in wanted)
        extra: list[Any] = [sa.column(c) for c in changed if c not in {col.column for col in cols}]
        ref = sa.table(name, *(sa.column(c.column) for c in cols), *extra, schema=schema or None)
        aware = bool(changed and getattr(reflected[changed[0]], "timezone", False))
        key = next(c.column for c in cols if c.name == "lead_id")
        return _Table(label, section.table, cols, ref, key, section.changed_at, aware)

    # --- reading ------------------------------------------------------------------------------------

    def read_tables(self, lead_ids: Sequence[str] | None = None) -> dict[str, pd.DataFrame]:
        """``leads``, ``activities`` and ``outcomes`` as the Parquet extract has them, for ``lead_ids``
        (all leads if ``None``), leads in the order asked for; ids not in the CRM are absent.

        The id filter runs in SQL; one id takes a fast path (one indexed lookup per table).

        Raises
        ------
        MappingError
            If a mapped table or column is missing, or an activity type value maps to nothing.
        """
        plan = self._prepare()
        with self._connect() as conn:
            rows: list[Sequence[Any]]
            try:
                if lead_ids is None:
                    st = plan.statements
                    rows = [conn.execute(st[f"{t}_all"]).all() for t in ("leads", "activities", "outcomes")]
                elif len(lead_ids) == 1:
                    key = {"id": self._bind_ids(lead_ids)[0]}
                    rows = [conn.execute(plan.statements[f"{t}_one"], key).all()
                            for t in ("leads", "activities", "outcomes")]
                else:
                    rows = self._rows_in(conn, list(dict.fromkeys(lead_ids)))
            except sa.exc.SQLAlchemyError as exc:
                raise StoreError(f"cannot read the CRM tables of {self.url}: {first_line(exc)}") from exc
        tables = self._frames(*rows)
        if lead_ids is not None and len(lead_ids) > 1:
            order = pd.Index([str(i) for i in dict.fromkeys(lead_ids)])
            pos = order.get_indexer(pd.Index(tables["leads"]["lead_id"]))
            tables["leads"] = tables["leads"].iloc[np.argsort(pos, kind="stable")].reset_index(drop=True)
        return tables

    def _bind_ids(self, ids: Sequence[Any]) -> list[Any]:
        if self._prepare().id_is_int:
            return [int(i) for i in ids]
        return [str(i) for i in ids]

    def _rows_in(self, conn: sa.Connection, ids: list[Any]) -> list[Sequence[Any]]:
        st = self._prepare().statements
        rows: list[list[Any]] = [[], [], []]
        for start in range(0, len(ids), IN_CHUNK):
            chunk = {"ids": self._bind_ids(ids[start:start + IN_CHUNK])}
            for i, t in enumerate(_LABELS):
                rows[i].extend(conn.execute(st[f"{t}_in"], chunk).all())
        return list(rows)

    def iter_lead_batches(self, batch_size: int = 10_000) -> Iterator[dict[str, pd.DataFrame]]:
        """Every lead, ``batch_size`` at a time (ordered by lead id, streamed through a server-side
        cursor), each batch with its activities and outcomes, as :meth:`read_tables` returns them."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise StoreError(f"batch_size: expected a positive integer, got {batch_size!r}")
        plan = self._prepare()
        with self._connect() as stream, self._connect() as conn:
            try:
                result = stream.execution_options(stream_results=True, yield_per=batch_size).execute(
                    plan.statements["leads_ordered"])
                for part in result.partitions():
                    ids = [row[0] for row in part]
                    acts, outs = (self._rows_between(conn, plan, label, ids) for label in ("activities",
                                                                                           "outcomes"))
                    yield self._frames(list(part), acts, outs)
            except sa.exc.SQLAlchemyError as exc:
                raise StoreError(f"cannot read the CRM tables of {self.url}: {first_line(exc)}") from exc

    def _rows_between(self, conn: sa.Connection, plan: _Plan, label: str, ids: list[Any]) -> list[Any]:
        """Rows of ``label`` whose lead id lies between the first and last of ``ids`` (a batch of leads
        in id order): one range scan of the index instead of long ``IN`` lists; rows of ids outside the
        batch (an activity of an unknown lead) are dropped, as an ``IN`` list would."""
        table = getattr(plan, label)
        at = next(i for i, c in enumerate(table.cols) if c.name == "lead_id")
        bounds = self._bind_ids([ids[0], ids[-1]])
        rows = conn.execute(plan.statements[f"{label}_range"], {"lo": bounds[0], "hi": bounds[1]}).all()
        wanted = set(ids)
        return [r for r in rows if r[at] in wanted]

    def _frames(self, leads: Sequence[Any], acts: Sequence[Any],
                outs: Sequence[Any]) -> dict[str, pd.DataFrame]:
        plan = self._prepare()
        return {"leads": self._frame(plan.leads, leads), "activities": self._frame(plan.activities, acts),
                "outcomes": self._outcomes(self._frame(plan.outcomes, outs))}

    def _frame(self, table: _Table, rows: Sequence[Any]) -> pd.DataFrame:
        columns = list(zip(*rows, strict=True)) if rows else [()] * len(table.cols)
        raw: dict[str, Sequence[Any]] = {c.name: v for c, v in zip(table.cols, columns, strict=True)}
        if "activity_type" in raw:
            self._map_activity_values(raw)
        data: dict[str, Any] = {}
        tz = self.mapping.timezone
        for col in table.cols:
            values, where = raw[col.name], f"{table.name}.{col.column}"
            if col.kind == "time":
                data[col.name] = cv.times(values, tz, where)
            elif col.name in ("lead_id", "activity_type", "direction", "status", "page", "note"):
                data[col.name] = cv.texts(values)
            elif col.name == "converted":
                data[col.name] = cv.flags(values)
            elif col.name == "activity_id" and col.kind == "int":
                data[col.name] = np.array(values, dtype="int64")
            elif col.kind in ("int", "number", "bool") or col.name == "duration_sec":
                data[col.name] = cv.numbers(values, where)
            else:
                data[col.name] = cv.texts(values)
        return pd.DataFrame(data, copy=False)

    def _map_values(self, name: str, found: Iterable[Any]) -> dict[str, str]:
        acts = self.mapping.activities
        values = activity_type_map(acts) if name == "activity_type" else direction_map(acts)
        column = acts.type if name == "activity_type" else acts.direction
        for value in found:
            if value is not None and str(value) not in values:
                what = "activity type" if name == "activity_type" else "direction (inbound/outbound)"
                key = "type_values" if name == "activity_type" else "direction_values"
                hint = ", or map it to 'ignore'" if name == "activity_type" else ""
                raise MappingError(f"mapping: value {value!r} in table {acts.table!r}, column {column!r} "
                                   f"maps to no leadscore {what} (add it to activities.{key}{hint})")
        return values

    def _map_activity_values(self, raw: dict[str, Sequence[Any]]) -> None:
        """CRM type and direction values -> leadscore's, in place; rows typed ``ignore`` dropped."""
        for name in ("activity_type", "direction"):
            if name in raw:
                known = self._map_values(name, set(raw[name]))
                raw[name] = [None if v is None else known[str(v)] for v in raw[name]]
        if IGNORE in raw["activity_type"]:
            keep = [i for i, v in enumerate(raw["activity_type"]) if v != IGNORE]
            for name, values in raw.items():
                raw[name] = [values[i] for i in keep]

    def _outcomes(self, frame: pd.DataFrame) -> pd.DataFrame:
        if "status" in frame:
            statuses = self.mapping.outcomes.status_values
            converted = [statuses.get(v) == "converted" for v in frame.pop("status").tolist()]
            frame.insert(1, "converted", np.array(converted, dtype="int8"))
        elif "converted" not in frame:
            frame.insert(1, "converted", frame["converted_at"].notna().to_numpy("int8"))
        at = frame["converted_at"].to_numpy("datetime64[ms]").copy()
        at[frame["converted"].to_numpy() != 1] = np.datetime64("NaT")
        frame["converted_at"] = at
        if len(frame) > 1 and frame["lead_id"].duplicated().any():  # several rows: the first conversion wins
            frame = frame.sort_values(["converted", "converted_at"], ascending=[False, True], kind="stable")
            frame = frame.drop_duplicates("lead_id").sort_values("lead_id").reset_index(drop=True)
        return frame

    # --- time ---------------------------------------------------------------------------------------

    def data_end(self) -> pd.Timestamp:
        """The latest moment the CRM observed: the newest lead, activity or conversion (naive UTC)."""
        plan = self._prepare()
        stamps: list[np.datetime64] = []
        with self._connect() as conn:
            for key in ("leads_max", "activities_max", "outcomes_max"):
                try:
                    value = conn.execute(plan.statements[key]).scalar()
                except sa.exc.SQLAlchemyError as exc:
                    raise StoreError(f"cannot read {self.url}: {first_line(exc)}") from exc
                stamps.extend(cv.times([value], self.mapping.timezone, key))
        known = [s for s in stamps if not np.isnat(s)]
        if not known:
            raise StoreError(f"the CRM in {self.url} holds no lead, activity or conversion")
        return pd.Timestamp(max(known))

    def newest_change(self) -> pd.Timestamp | None:
        """The newest ``changed_at`` of any lead, activity or separate outcome row (naive UTC; one
        indexed ``MAX`` per table), or None when nothing is tracked or stored."""
        plan = self._prepare()
        sources = [t for t in (plan.leads, plan.activities, plan.outcomes)
                   if t.changed and not (t.label == "outcomes" and t.name == plan.leads.name)]
        stamps: list[np.datetime64] = []
        with self._connect() as conn:
            for table in sources:
                try:
                    value = conn.execute(sa.select(sa.func.max(table.column(str(table.changed))))).scalar()
                except sa.exc.SQLAlchemyError as exc:
                    raise StoreError(f"cannot read {table.name} of {self.url}: {first_line(exc)}") from exc
                found = cv.times([value], self.mapping.timezone, table.name)
                stamps.extend(s for s in found if not np.isnat(s))
        return pd.Timestamp(max(stamps)) if stamps else None

    def changed_leads(self, since: Any = None, until: Any = None) -> ChangedLeads:
        """Leads whose lead row, activities (or separate outcome row) have ``changed_at`` in
        ``(since, until]`` (naive UTC or aware; ``None``: unbounded), with the newest change seen.

        Raises
        ------
        MappingError
            If the mapping names no ``changed_at`` column.
        """
        plan = self._prepare()
        sources = [t for t in (plan.leads, plan.activities, plan.outcomes)
                   if t.changed and not (t.label == "outcomes" and t.name == plan.leads.name)]
        if not sources:
            raise MappingError("mapping: no changed_at column (set leads.changed_at and "
                               "activities.changed_at to track what changed)")
        ids: set[str] = set()
        newest: list[np.datetime64] = []
        per_lead: dict[str, pd.Timestamp] = {}
        sqlite = self.engine.dialect.name == "sqlite"
        with self._connect() as conn:
            for table in sources:
                column = str(table.changed)
                key, changed = table.column(table.key), table.column(column)
                window = sa.select(key.label("lead"), changed.label("changed"))
                for bound, op in ((since, "__gt__"), (until, "__le__")):
                    if bound is not None:
                        value = cv.bind_time(bound, aware=table.changed_aware, tz=self.mapping.timezone,
                                             sqlite=sqlite)
                        window = window.where(getattr(changed, op)(sa.literal(value)))
                # filtered first, grouped after: the planner reads the change column's index range
                inner = window.subquery("window")
                query = sa.select(inner.c.lead, sa.func.max(inner.c.changed)).group_by(inner.c.lead)
                try:
                    rows = conn.execute(query).all()
                except sa.exc.SQLAlchemyError as exc:
                    raise StoreError(f"cannot read {table.name} of {self.url}: {first_line(exc)}") from exc
                ids.update(str(r[0]) for r in rows)
                stamps = cv.times([r[1] for r in rows], self.mapping.timezone, f"{table.name}.{column}")
                newest.extend(s for s in stamps if not np.isnat(s))
                for row, stamp in zip(rows, stamps, strict=True):
                    if not np.isnat(stamp):
                        lead, at = str(row[0]), pd.Timestamp(stamp)
                        per_lead[lead] = max(per_lead.get(lead, at), at)
        return ChangedLeads(tuple(sorted(ids)), pd.Timestamp(max(newest)) if newest else None, per_lead)


def _statements(tables: dict[str, _Table], statuses: dict[str, str]) -> dict[str, Any]:
    """Every statement built once, so SQLAlchemy's compiled cache serves each call."""
    out: dict[str, Any] = {}
    for label, table in tables.items():
        key = table.column(table.key)
        select = table.select()
        ordered = (key, table.column(next(c.column for c in table.cols if c.name == "timestamp"))) \
            if label == "activities" else (key,)
        out[f"{label}_all"] = select.order_by(*ordered)
        out[f"{label}_one"] = select.where(key == sa.bindparam("id")).order_by(*ordered)
        out[f"{label}_in"] = select.where(key.in_(sa.bindparam("ids", expanding=True))).order_by(*ordered)
        out[f"{label}_range"] = select.where(key >= sa.bindparam("lo"), key <= sa.bindparam("hi")) \
            .order_by(*ordered)
    out["leads_ordered"] = out["leads_all"]
    out["activities_all"] = tables["activities"].select()
    for label, concept in zip(_LABELS, ("created_at", "timestamp", "converted_at"), strict=True):
        table = tables[label]
        column = table.column(next(c.column for c in table.cols if c.name == concept))
        out[f"{label}_max"] = sa.select(sa.func.max(column))
    out["outcomes_max"] = out["outcomes_max"].where(_converted(tables["outcomes"], statuses))
    return out


def _converted(table: _Table, statuses: dict[str, str]) -> Any:
    """SQL condition: the outcome row records a conversion."""
    for col in table.cols:
        column = table.column(col.column)
        if col.name == "converted":
            if col.kind == "bool":
                return column.is_(sa.true())
            if col.kind in ("int", "number"):
                return column != 0
            return sa.func.lower(column).in_(cv.TRUE_TEXTS)
        if col.name == "status":
            return column.in_([k for k, v in statuses.items() if v == "converted"])
    return sa.true()


def _mysql_utc(dbapi_connection: Any, _record: Any) -> None:
    """MariaDB/MySQL ``TIMESTAMP`` values come back in the session zone: make it UTC."""
    cursor = dbapi_connection.cursor()
    cursor.execute("SET time_zone = '+00:00'")
    cursor.close()
