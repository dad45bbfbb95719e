"""Prometheus metrics of the service.

With several worker processes, ``leadscore serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` before the workers
start; every process then writes its values to files there and ``/metrics`` (answered by any worker)
adds them up, so one scrape sees the whole server.
"""

from __future__ import annotations

import os
from collections import Counter as Tally
from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5,
                   1.0, 2.5, 5.0, 10.0)
SCORE_BUCKETS = (10, 20, 30, 40, 50, 60, 70, 80, 90, 100)
CONTENT_TYPE = CONTENT_TYPE_LATEST


def multiprocess_mode() -> bool:
    """True when metric values go to files shared by several worker processes."""
    return bool(os.environ.get(MULTIPROC_ENV))


class ServiceMetrics:
    """The service's metrics, in a registry of their own (several apps can live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.shared: CollectorRegistry | None = None
        reg = self.registry
        self.requests = Counter("leadscore_http_requests", "HTTP requests by endpoint, method and status",
                                ["endpoint", "method", "status"], registry=reg)
        self.latency = Histogram("leadscore_http_request_duration_seconds",
                                 "Time from request start to the end of the response, in seconds",
                                 ["endpoint", "method", "status"], buckets=LATENCY_BUCKETS, registry=reg)
        self.predictions = Counter("leadscore_predictions", "Leads scored, by model version and tier",
                                   ["model_version", "tier"], registry=reg)
        self.scores = Histogram("leadscore_prediction_score", "Distribution of the 0-100 scores returned",
                                ["model_version"], buckets=SCORE_BUCKETS, registry=reg)
        self.errors = Counter("leadscore_errors", "Requests answered with an error, by endpoint and kind",
                              ["endpoint", "kind"], registry=reg)
        self.queue_depth = Gauge("leadscore_prediction_log_queue_depth",
                                 "Scored leads waiting to be written to the prediction log",
                                 registry=reg, multiprocess_mode="livesum")
        self.log_rows = Counter("leadscore_prediction_log_rows_written", "Rows written to the prediction log",
                                registry=reg)
        self.log_failures = Counter("leadscore_prediction_log_write_failures",
                                    "Failed prediction-log writes (retried)", registry=reg)
        self.model_switches = Counter("leadscore_model_switches", "Times a worker swapped in another model",
                                      registry=reg)
        self.shadow_predictions = Counter("leadscore_shadow_predictions",
                                          "Leads also scored by the challenger (logged, never returned)",
                                          ["model_version"], registry=reg)
        self.shadow_failures = Counter("leadscore_shadow_failures",
                                       "Requests the challenger could not score (the answer is unaffected)",
                                       registry=reg)
        self.model_loaded = Gauge("leadscore_model_loaded", "1 for the model version a worker serves",
                                  ["model_version"], registry=reg, multiprocess_mode="liveall")

    def observe_request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        labels = (endpoint, method, str(status))
        self.requests.labels(*labels).inc()
        self.latency.labels(*labels).observe(seconds)

    def observe_scores(self, version: str, tiers: Iterable[str], scores: Iterable[int]) -> None:
        for tier, count in Tally(tiers).items():
            self.predictions.labels(version, tier).inc(count)
        histogram = self.scores.labels(version)
        for score in scores:
            histogram.observe(score)

    def serving(self, version: str, previous: str | None) -> None:
        if previous is not None and previous != version:
            self.model_loaded.labels(previous).set(0)
            self.model_switches.inc()
        self.model_loaded.labels(version).set(1)

    def add_shared(self, collector: Collector) -> None:
        """Add a collector whose figures every worker reads from shared state (the store's monitoring
        states, the training jobs and gate decisions), so they are not added up across workers."""
        if self.shared is None:
            self.shared = CollectorRegistry()
        self.shared.register(collector)

    def render(self) -> bytes:
        """The text exposition format: this process's metrics, or all workers' in multiprocess mode,
        then the shared figures (the same for every worker)."""
        states = b"" if self.shared is None else generate_latest(self.shared)
        if multiprocess_mode():
            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged)
            return generate_latest(merged) + states
        return generate_latest(self.registry) + states


def mark_process_dead(pid: int) -> None:
    """Drop a finished worker's live gauges (multiprocess mode only)."""
    if multiprocess_mode():
        multiprocess.mark_process_dead(pid)
