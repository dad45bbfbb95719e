"""Experiments and their exposure log, in the same store as the prediction log and the outcomes.

Two tables: ``experiments`` (one row per experiment: arms, split, salt, settings, state) and
``experiment_exposures`` (one row per experiment and lead: its arm, when it was first assigned, and, when
it was scored, both arms' scores and the pre-assignment probability used as the CUPED covariate). A lead
is recorded once: assigning or scoring it again returns the first row unchanged (insert, skip on conflict),
so concurrent workers and re-runs agree. Outcomes come from the store's outcomes table.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from leadscore.core.database import UtcDateTime, first_line
from leadscore.core.exceptions import (
    ConfigError,
    ExperimentNotFoundError,
    ExperimentStateError,
    StoreError,
)
from leadscore.experiments.assignment import CONTROL, TREATMENT, arm_of, check_split
from leadscore.modeling.rules import rules_from_config

EXPERIMENTS, EXPOSURES = "experiments", "experiment_exposures"
RULES = "rules"  # the control arm that ranks by the rules baseline instead of a model version
RUNNING, STOPPED = "running", "stopped"
CHUNK = 1000
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
SCORE_COLUMNS = ("control_probability", "control_score", "treatment_probability", "treatment_score",
                 "covariate")


@dataclass(frozen=True)
class Experiment:
    """One experiment: control and treatment arms (``"rules"`` or a model version), the treatment's
    share of leads, its salt and the settings its analysis uses."""

    name: str
    description: str
    control: str
    treatment: str
    split: float
    salt: str
    window_days: float
    min_days: float
    mde: float
    alpha: float
    status: str
    created_at: datetime
    stopped_at: datetime | None = None
    stop_reason: str | None = None
    rules: list[dict[str, Any]] | None = None  # the point system of a ``rules`` control, frozen at creation

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("created_at", "stopped_at"):
            out[key] = None if out[key] is None else out[key].isoformat()
        return out

    def arm_of(self, lead_id: str) -> str:
        """The lead's arm (deterministic: see :mod:`leadscore.experiments.assignment`)."""
        return arm_of(self.salt, lead_id, self.split)

    def arm_model(self, arm: str) -> str:
        """What ranks the arm's leads: ``"rules"`` or a model version."""
        return self.control if arm == CONTROL else self.treatment


def build_tables(metadata: sa.MetaData) -> tuple[sa.Table, sa.Table]:
    experiments = sa.Table(
        EXPERIMENTS, metadata,
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("control", sa.Text, nullable=False),
        sa.Column("treatment", sa.Text, nullable=False),
        sa.Column("split", sa.Float, nullable=False),
        sa.Column("salt", sa.Text, nullable=False),
        sa.Column("window_days", sa.Float, nullable=False),
        sa.Column("min_days", sa.Float, nullable=False),
        sa.Column("mde", sa.Float, nullable=False),
        sa.Column("alpha", sa.Float, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("stopped_at", UtcDateTime),
        sa.Column("stop_reason", sa.Text),
        sa.Column("rules", _JSON),
    )
    exposures = sa.Table(
        EXPOSURES, metadata,
        sa.Column("experiment", sa.Text, primary_key=True),
        sa.Column("lead_id", sa.Text, primary_key=True),
        sa.Column("arm", sa.Text, nullable=False),
        sa.Column("assigned_at", UtcDateTime, nullable=False),
        *(sa.Column(name, sa.Float) for name in SCORE_COLUMNS),
    )
    return experiments, exposures


def _number(value: Any) -> float | None:
    """A score as a float, None when missing (NaN is stored as NULL on every backend)."""
    return None if value is None or pd.isna(value) else float(value)


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"experiment name: expected 1-64 letters, digits, '_', '.' or '-' starting with a "
                          f"letter or digit, got {name!r}")
    return name


def _positive(name: str, value: float, *, below_one: bool = False) -> float:
    ok = isinstance(value, int | float) and value > 0 and (not below_one or value < 1)
    if not ok:
        limit = "between 0 and 1" if below_one else "a number > 0"
        raise ConfigError(f"{name}: expected {limit}, got {value!r}")
    return float(value)


class ExperimentStore:
    """Create, list, stop experiments and record exposures (SQLite or PostgreSQL, SQLAlchemy Core)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        metadata = sa.MetaData()
        self.experiments, self.exposures = build_tables(metadata)
        try:
            metadata.create_all(engine, checkfirst=True)
        except (sa.exc.IntegrityError, sa.exc.ProgrammingError, sa.exc.OperationalError) as exc:
            if "exist" not in str(exc).lower():  # not another worker creating them first
                raise StoreError(f"experiments: cannot create tables: {first_line(exc)}") from exc
        insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        self._insert_exposure = insert(self.exposures).on_conflict_do_nothing(
            index_elements=["experiment", "lead_id"])

    def _run(self, what: str, work: Any) -> Any:
        try:
            with self.engine.begin() as conn:
                return work(conn)
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"experiments: cannot {what}: {first_line(exc)}") from exc

    def create(self, name: str, *, control: str, treatment: str, split: float, window_days: float,
               min_days: float, mde: float, alpha: float, description: str = "",
               rules: Sequence[Mapping[str, Any]] = (), now: datetime | None = None,
               salt: str | None = None) -> Experiment:
        """Start a new experiment (running from ``now``) with a fresh random salt (or ``salt``: a
        simulation that assigned its leads already).

        Raises
        ------
        ConfigError
            If a setting is invalid (name, split, durations, mde, alpha, identical arms).
        ExperimentStateError
            If an experiment of that name exists (running or stopped: names are never reused).
        """
        _check_name(name)
        for arm, value in (("control", control), ("treatment", treatment)):
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"{arm}: expected 'rules' or a model version, got {value!r}")
        if treatment == RULES:
            raise ConfigError("treatment: expected a model version; the rules baseline is a control arm")
        if control == treatment:
            raise ConfigError(f"control and treatment are both {control!r}: an experiment compares two arms")
        if control == RULES:
            if not rules:
                raise ConfigError("control 'rules': the point system is empty (params.yaml `rules`)")
            rules_from_config(rules)  # raises ConfigError on a malformed rule
        experiment = Experiment(
            name=name, description=description, control=control.strip(), treatment=treatment.strip(),
            split=check_split(split), salt=salt or secrets.token_hex(8),
            window_days=_positive("window_days", window_days), min_days=_positive("min_days", min_days),
            mde=_positive("mde", mde, below_one=True), alpha=_positive("alpha", alpha, below_one=True),
            status=RUNNING, created_at=now or datetime.now(UTC),
            rules=[dict(r) for r in rules] if control == RULES else None)

        taken = f"experiment {name!r} already exists: choose another name"

        def insert(conn: sa.Connection) -> None:
            found = conn.execute(sa.select(self.experiments.c.name)
                                 .where(self.experiments.c.name == name)).first()
            if found is not None:
                raise ExperimentStateError(taken)
            conn.execute(self.experiments.insert().values(**asdict(experiment)))

        try:
            self._run(f"create experiment {name!r}", insert)
        except StoreError as exc:
            if isinstance(exc.__cause__, sa.exc.IntegrityError):  # created by someone else meanwhile
                raise ExperimentStateError(taken) from exc
            raise
        return experiment

    def get(self, name: str) -> Experiment:
        """The experiment called ``name``.

        Raises
        ------
        ExperimentNotFoundError
            If there is none.
        """
        row = self._run(f"read experiment {name!r}", lambda conn: conn.execute(
            sa.select(self.experiments).where(self.experiments.c.name == name)).first())
        if row is None:
            known = [e.name for e in self.list_experiments()]
            hint = f"; experiments: {', '.join(known[:10])}" if known else "; create one first"
            raise ExperimentNotFoundError(f"no experiment {name!r} in the store{hint}")
        return Experiment(**dict(row._mapping))

    def list_experiments(self) -> list[Experiment]:
        """Every experiment, newest first."""
        rows = self._run("list experiments", lambda conn: conn.execute(
            sa.select(self.experiments).order_by(self.experiments.c.created_at.desc())).all())
        return [Experiment(**dict(r._mapping)) for r in rows]

    def stop(self, name: str, reason: str = "", now: datetime | None = None) -> Experiment:
        """Stop a running experiment: no new assignments; its results stay readable.

        Raises
        ------
        ExperimentNotFoundError, ExperimentStateError
            If there is no such experiment or it is already stopped.
        """
        experiment = self.get(name)
        if experiment.status != RUNNING:
            raise ExperimentStateError(f"experiment {name!r} was already stopped at "
                                       f"{experiment.stopped_at:%Y-%m-%d %H:%M} UTC")
        when = now or datetime.now(UTC)
        table = self.experiments
        self._run(f"stop experiment {name!r}", lambda conn: conn.execute(
            table.update().where(table.c.name == name, table.c.status == RUNNING)
            .values(status=STOPPED, stopped_at=when, stop_reason=reason or None)))
        return self.get(name)

    def running(self, name: str) -> Experiment:
        """The experiment, which must be running (to assign or score leads in it)."""
        experiment = self.get(name)
        if experiment.status != RUNNING:
            raise ExperimentStateError(f"experiment {name!r} is stopped: it assigns no more leads")
        return experiment

    def assign(self, experiment: Experiment, lead_id: str, *, now: datetime | None = None,
               scores: Mapping[str, float | None] | None = None) -> dict[str, Any]:
        """The lead's exposure row, recording it (with ``scores``) the first time; later calls return the
        first row unchanged."""
        [row] = self.record(experiment, [{"lead_id": lead_id, **(scores or {})}], now=now)
        return row

    def record(self, experiment: Experiment, leads: Iterable[Mapping[str, Any]], *,
               now: datetime | None = None) -> list[dict[str, Any]]:
        """Record many leads (``lead_id`` and optional score columns) in one transaction; their exposure
        rows as stored (the first assignment wins). All or nothing."""
        when = now or datetime.now(UTC)
        rows: list[dict[str, Any]] = []
        for lead in leads:
            lead_id = str(lead["lead_id"])
            row = {"experiment": experiment.name, "lead_id": lead_id, "arm": experiment.arm_of(lead_id),
                   "assigned_at": lead.get("assigned_at") or when}
            row.update({k: _number(lead.get(k)) for k in SCORE_COLUMNS})
            rows.append(row)
        table = self.exposures
        ids = [str(r["lead_id"]) for r in rows]

        def write(conn: sa.Connection) -> list[dict[str, Any]]:
            for start in range(0, len(rows), CHUNK):
                conn.execute(self._insert_exposure, rows[start:start + CHUNK])
            stored: dict[str, dict[str, Any]] = {}
            for start in range(0, len(ids), CHUNK):
                found = conn.execute(sa.select(table).where(
                    table.c.experiment == experiment.name, table.c.lead_id.in_(ids[start:start + CHUNK])))
                stored.update({r.lead_id: dict(r._mapping) for r in found})
            return [stored[i] for i in ids]

        return list(self._run(f"record exposures of {experiment.name!r}", write)) if rows else []

    def exposure_frame(self, name: str) -> pd.DataFrame:
        """Every exposure of the experiment (lead_id, arm, assigned_at and the score columns)."""
        table = self.exposures

        def read(conn: sa.Connection) -> pd.DataFrame:
            return pd.read_sql(sa.select(table).where(table.c.experiment == name), conn)

        frame = self._run(f"read the exposures of {name!r}", read)
        frame["assigned_at"] = pd.to_datetime(frame["assigned_at"], utc=True)
        return frame.astype({"lead_id": str, "arm": str})

    def exposed_leads(self, name: str) -> sa.Select[Any]:
        """A query of the lead ids in the experiment (to read only their outcomes)."""
        return sa.select(self.exposures.c.lead_id).where(self.exposures.c.experiment == name)

    def counts(self, name: str) -> dict[str, int]:
        """Leads assigned so far per arm."""
        table = self.exposures
        rows = self._run(f"count the exposures of {name!r}", lambda conn: conn.execute(
            sa.select(table.c.arm, sa.func.count()).where(table.c.experiment == name)
            .group_by(table.c.arm)).all())
        found = {str(arm): int(n) for arm, n in rows}
        return {CONTROL: found.get(CONTROL, 0), TREATMENT: found.get(TREATMENT, 0)}
