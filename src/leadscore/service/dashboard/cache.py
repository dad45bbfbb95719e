"""The dashboard's heavy panels (scores, performance, drift, segments, experiments): how each is
computed and kept.

Each panel is a *job*: its cache key (the store, the registry, the served version and the query) and a
function that computes its answer from the prediction log, the outcomes and the served model. Answers
are kept in the app's :class:`PanelCache` (``app.state.panel_cache``, one per app, made and closed with
it: fresh 30 s, then shown while recomputed in the background for up to 15 minutes), and
:func:`keep_warm` computes the page's default panels ahead of any request: at start, for each new served
version, and before a kept answer expires.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from leadscore.monitoring.drift import DriftThresholds
from leadscore.monitoring.predlog import read_served
from leadscore.service.dashboard import panels
from leadscore.service.holder import ServedModel
from leadscore.service.responses import (
    DashboardExperiments,
    DriftOverTime,
    PerformanceOverTime,
    ScoreSummary,
    SegmentSummary,
)
from leadscore.service.state import Service

log = logging.getLogger("leadscore.service")
CACHE_SECONDS = 30.0      # a heavy panel's answer is fresh this long
STALE_SECONDS = 900.0     # and shown (while recomputed) this long
DAYS, WEEKS, DRIFT_WEEKS, SEGMENT_DAYS = 30, 26, 12, 90  # the page's first requests (dashboard.js too)
EXPERIMENTS = 3           # the newest experiments the page shows
WARM_EVERY = 5.0          # seconds between keep_warm's looks
RETRY_SECONDS = 60.0      # a panel whose background computation failed is not warmed again sooner
CLOSE_SECONDS = 30.0      # how long closing waits for a background computation to end


class PanelCache:
    """The heavy panels' answers, per key, of one app.

    An answer is fresh for ``fresh`` seconds and returned as it is. Older, up to ``stale`` seconds, it is
    still returned at once while a background thread computes its successor (stale-while-revalidate), so
    a page is not held up by a recomputation; an absent or older answer is computed in the request.
    :meth:`warm` computes one in the background ahead of any request; :meth:`close` stops the background
    thread (the app's lifespan calls it).
    """

    def __init__(self, fresh: float = CACHE_SECONDS, stale: float = STALE_SECONDS, size: int = 64,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.fresh, self.stale, self.size, self.clock = fresh, stale, size, clock
        self._lock = threading.Lock()
        self._kept: dict[Any, tuple[float, Any]] = {}
        self._pending: set[Any] = set()
        self._failed: dict[Any, float] = {}  # when a background computation of a key last failed
        self._queue: queue.SimpleQueue[tuple[Any, Callable[[], Any]] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None  # the background thread, reading self._queue

    def get(self, key: Any, compute: Callable[[], Any]) -> Any:
        """The kept answer for ``key`` (refreshed in the background when no longer fresh), else
        ``compute()``'s, kept."""
        with self._lock:
            found = self._kept.get(key)
            age = self.clock() - found[0] if found is not None else math.inf
            if age < self.stale:
                if age >= self.fresh:
                    self._submit(key, compute)
                return found[1]  # type: ignore[index]
        return self._put(key, compute())

    def warm(self, key: Any, compute: Callable[[], Any], *, older_than: float | None = None) -> None:
        """Compute ``key`` in the background unless an answer younger than ``older_than`` seconds (default:
        a fresh one) is kept or one is being computed."""
        limit = self.fresh if older_than is None else older_than
        with self._lock:
            now = self.clock()
            if now - self._failed.get(key, -math.inf) < RETRY_SECONDS:
                return  # it failed a moment ago (the store is down?): not again every few seconds
            found = self._kept.get(key)
            if found is None or now - found[0] >= limit:
                self._submit(key, compute)

    def age(self, key: Any) -> float | None:
        """Seconds since ``key``'s kept answer was computed (None when none is kept)."""
        with self._lock:
            found = self._kept.get(key)
            return None if found is None else self.clock() - found[0]

    def pending(self) -> int:
        """Answers waiting for or in the background thread."""
        with self._lock:
            return len(self._pending)

    def close(self, timeout: float = CLOSE_SECONDS) -> None:
        """Stop the background thread once its current computation ends (waiting up to ``timeout``
        seconds); computations still queued are dropped. A later refresh starts a new thread."""
        with self._lock:
            thread, jobs, self._thread, self._queue = self._thread, self._queue, None, queue.SimpleQueue()
            while not jobs.empty():
                job = jobs.get_nowait()
                if job is not None:
                    self._pending.discard(job[0])
            jobs.put(None)
        if thread is not None:
            thread.join(timeout)

    def _submit(self, key: Any, compute: Callable[[], Any]) -> None:  # under the lock
        if key in self._pending:
            return
        self._pending.add(key)
        self._queue.put((key, compute))
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._work, args=(self._queue,), name="dashboard-refresh",
                                            daemon=True)
            self._thread.start()

    def _work(self, jobs: queue.SimpleQueue[tuple[Any, Callable[[], Any]] | None]) -> None:
        while (job := jobs.get()) is not None:
            key, compute = job
            try:
                self._put(key, compute())
                with self._lock:
                    self._failed.pop(key, None)
            except Exception as exc:  # noqa: BLE001 - a failed refresh keeps the older answer
                log.warning("dashboard: computing %s in the background failed: %s", key[3:], exc)
                with self._lock:
                    self._failed[key] = self.clock()
            finally:
                with self._lock:
                    self._pending.discard(key)

    def _put(self, key: Any, value: Any) -> Any:
        with self._lock:
            now = self.clock()
            if len(self._kept) >= self.size:
                self._kept = {k: v for k, v in self._kept.items() if now - v[0] < self.stale}
                if len(self._kept) >= self.size:
                    self._kept.clear()
            self._kept[key] = (now, value)
        return value


Job = tuple[tuple[Any, ...], Callable[[], Any]]  # a heavy panel's cache key and its computation


def _key(svc: Service, *parts: Any) -> tuple[Any, ...]:
    return (str(svc.predlog.engine.url), svc.predlog.table.name, str(svc.registry.root), *parts)


def scores_job(svc: Service, days: int) -> Job:
    """The recent-scores panel of the last ``days`` days."""
    predlog = svc.predlog

    def compute() -> ScoreSummary:
        return panels.score_summary(predlog.engine, predlog.table, days=days, now=datetime.now(UTC))

    return _key(svc, "scores", days), compute


def performance_job(svc: Service, served: ServedModel, weeks: int, all_versions: bool) -> Job:
    """The performance panel of ``served`` (every version with ``all_versions``) over ``weeks`` weeks."""
    predlog = svc.predlog
    window = panels.label_window_days(served.scorer.bundle.metadata)

    def compute() -> PerformanceOverTime:
        return panels.performance_over_time(
            predlog.engine, predlog.table, svc.outcomes.frame(), svc.registry.events(),
            version=served.version, weeks=weeks, window_days=window, now=datetime.now(UTC),
            all_versions=all_versions)

    return _key(svc, "performance", served.version, weeks, all_versions), compute


def drift_job(svc: Service, served: ServedModel, weeks: int) -> Job:
    """The drift heatmap of ``served``'s leads over ``weeks`` weeks."""
    settings = svc.params.monitoring

    def compute() -> DriftOverTime:
        since = datetime.now(UTC) - timedelta(weeks=weeks)
        frame = read_served(svc.predlog.engine, svc.predlog.table, since=since, version=served.version,
                            limit=panels.MAX_DRIFT + 1, inputs=True)
        return panels.drift_over_time(
            frame.head(panels.MAX_DRIFT), served.scorer.bundle, version=served.version, weeks=weeks,
            since=since, truncated=len(frame) > panels.MAX_DRIFT,
            thresholds=DriftThresholds.from_settings(settings), ignore=settings.ignore)

    return _key(svc, "drift", served.version, weeks), compute


def segments_job(svc: Service, served: ServedModel, days: int, k: int) -> Job:
    """``k`` segments of the leads ``served`` scored in the last ``days`` days."""
    window = panels.label_window_days(served.scorer.bundle.metadata)

    def compute() -> SegmentSummary:
        now = datetime.now(UTC)
        frame = read_served(svc.predlog.engine, svc.predlog.table, since=now - timedelta(days=days),
                            version=served.version, limit=panels.MAX_SEGMENT + 1, inputs=True)
        return panels.segment_summary(
            frame.head(panels.MAX_SEGMENT), svc.outcomes.frame(), served.scorer.bundle,
            version=served.version, days=days, k=k, truncated=len(frame) > panels.MAX_SEGMENT,
            window_days=window, now=now, seed=svc.params.seed)

    return _key(svc, "segments", served.version, days, k), compute


def experiments_job(svc: Service, limit: int = EXPERIMENTS) -> Job:
    """The newest ``limit`` experiments with their analyses."""

    def compute() -> DashboardExperiments:
        listed = svc.experiments.store.list_experiments()
        return DashboardExperiments(total=len(listed), limit=limit,
                                    experiments=[svc.experiments.results(e.name, svc.outcomes)
                                                 for e in listed[:limit]])

    return _key(svc, "experiments", limit), compute


def default_jobs(svc: Service, served: ServedModel) -> list[Job]:
    """The heavy panels as the page first asks for them."""
    return [performance_job(svc, served, WEEKS, False), drift_job(svc, served, DRIFT_WEEKS),
            segments_job(svc, served, SEGMENT_DAYS, svc.params.clusters_k), scores_job(svc, DAYS),
            experiments_job(svc)]


def keep_warm(svc: Service, cache: PanelCache, stop: threading.Event, every: float = WARM_EVERY) -> None:
    """Until ``stop``: every ``every`` seconds, compute in ``cache``'s background the page's default panels
    that are missing (a new model version, a first start) or about to stop being shown (older than the
    stale limit less two minutes), so that opening the dashboard does not wait for them."""
    older_than = STALE_SECONDS - 120
    while not stop.wait(every):
        served = svc.holder.current
        if served is None:
            continue
        try:
            for key, compute in default_jobs(svc, served):
                cache.warm(key, compute, older_than=older_than)
        except Exception as exc:  # noqa: BLE001 - the page computes what is missing; keep looking
            log.warning("dashboard: cannot plan the background panels: %s", exc)
