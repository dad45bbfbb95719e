"""Alert states where other tools read them: a table in the store (which ``leadscore serve`` exports on
``/metrics``) and the Prometheus text format (``--prometheus-textfile`` for node_exporter's textfile
collector, for batch-only users).

Gauges: ``leadscore_monitor_state`` (0 ok, 1 warn, 2 alert) and ``leadscore_monitor_value`` (the PSI or
ROC-AUC behind it), labelled by check, model_version and subject, and
``leadscore_monitor_checked_timestamp_seconds``, when the checks last ran.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, write_to_textfile
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from leadscore.core.database import UtcDateTime
from leadscore.core.exceptions import StoreError
from leadscore.monitoring.alerts import LEVELS, CheckState

LABELS = ("check", "model_version", "subject")
STATES_TABLE = "monitor_states"


def states_table(metadata: sa.MetaData, name: str = STATES_TABLE) -> sa.Table:
    """The latest alert states, replaced as a whole by every ``leadscore monitor check``."""
    return sa.Table(
        name, metadata,
        sa.Column("check", sa.Text, nullable=False), sa.Column("model_version", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False), sa.Column("period", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False), sa.Column("reason", sa.Text, nullable=False),
        sa.Column("value", sa.Float), sa.Column("checked_at", UtcDateTime, nullable=False))


def save_states(engine: sa.Engine, states: list[CheckState], checked_at: datetime,
                name: str = STATES_TABLE) -> None:
    """Replace the stored states with ``states`` in one transaction.

    Raises
    ------
    StoreError
        If the database cannot be written.
    """
    table = states_table(sa.MetaData(), name)
    try:
        table.create(engine, checkfirst=True)
        with engine.begin() as conn:
            conn.execute(table.delete())
            if states:
                conn.execute(table.insert(), [{**s.as_dict(), "checked_at": checked_at} for s in states])
    except sa.exc.SQLAlchemyError as exc:
        raise StoreError(f"cannot save the alert states: "
                         f"{str(getattr(exc, 'orig', exc)).strip().splitlines()[0]}") from exc


def load_states(engine: sa.Engine, name: str = STATES_TABLE) -> tuple[list[CheckState], datetime | None]:
    """The stored states and when they were checked (``[], None`` before the first check)."""
    if not sa.inspect(engine).has_table(name):
        return [], None
    table = states_table(sa.MetaData(), name)
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.select(table))]
    checked = max((r.pop("checked_at") for r in rows), default=None)
    if checked is not None and checked.tzinfo is None:
        checked = checked.replace(tzinfo=UTC)
    return [CheckState(**r) for r in rows], checked


def metric_families(states: Iterable[CheckState], checked_at: datetime | None) -> list[Metric]:
    """The gauges of the module docstring for ``states``."""
    state = GaugeMetricFamily("leadscore_monitor_state", "Monitoring check state: 0 ok, 1 warn, 2 alert",
                              labels=LABELS)
    value = GaugeMetricFamily("leadscore_monitor_value",
                              "The figure a monitoring check judged (PSI for drift, ROC-AUC for performance)",
                              labels=LABELS)
    for s in states:
        labels = [s.check, s.model_version, s.subject]
        state.add_metric(labels, LEVELS.get(s.state, 0))
        if s.value is not None:
            value.add_metric(labels, s.value)
    families: list[Metric] = [state, value]
    if checked_at is not None:
        stamp = GaugeMetricFamily("leadscore_monitor_checked_timestamp_seconds",
                                  "When the monitoring checks last ran (Unix time)")
        stamp.add_metric([], checked_at.timestamp())
        families.append(stamp)
    return families


class CachedCollector(Collector):
    """Collects the metric families ``produce`` returns, computed at most once per ``ttl`` seconds: what
    every worker reads from shared state (the store, the registry) is not re-read on every scrape."""

    def __init__(self, produce: Callable[[], list[Metric]], ttl: float = 5.0) -> None:
        self.produce, self.ttl = produce, ttl
        self._lock = threading.Lock()
        self._cached: tuple[float, list[Metric]] | None = None

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] > self.ttl:
                self._cached = (now, self.produce())
            yield from self._cached[1]


def states_collector(source: Callable[[], tuple[list[CheckState], datetime | None]],
                     ttl: float = 5.0) -> CachedCollector:
    """The gauges of the module docstring for the states ``source`` returns (and when they were checked)."""
    return CachedCollector(lambda: metric_families(*source()), ttl)


def write_textfile(path: str | Path, states: list[CheckState], checked_at: datetime) -> Path:
    """Write the gauges in the Prometheus text format to ``path`` (atomically: a temporary file renamed)."""
    registry = CollectorRegistry()
    registry.register(CachedCollector(lambda: metric_families(states, checked_at), ttl=0))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), registry)
    return path
