"""Everything one app instance holds (keys, buckets, metrics, the served model, the logs) and the one
scoring function the endpoints call."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import anyio
import pandas as pd
import sqlalchemy as sa
from pydantic import BaseModel

from leadscore.artifacts.registry import Registry
from leadscore.core.config import Params
from leadscore.core.exceptions import ConfigError, LeadscoreError
from leadscore.monitoring.alerts import CheckState
from leadscore.monitoring.exposition import CachedCollector, load_states, states_collector
from leadscore.monitoring.log_rows import json_value
from leadscore.monitoring.outcomes import OutcomeStore
from leadscore.monitoring.predlog import PredictionLog, open_database
from leadscore.service.auth import KeyStore
from leadscore.service.crm_leads import CrmLeads
from leadscore.service.experiment_state import ServiceExperiments, experiment_families, service_params
from leadscore.service.holder import ModelHolder, ServedModel
from leadscore.service.metrics import ServiceMetrics, mark_process_dead
from leadscore.service.middleware import Draining
from leadscore.service.ratelimit import TokenBuckets
from leadscore.service.settings import ServiceSettings
from leadscore.service.train_jobs import TrainJobs, training_families

log = logging.getLogger(__name__)

RATE_FILE = "ratelimit.bin"
EXPERIMENT_METRICS_TTL = 60.0  # seconds: experiment conversion reads every outcome; once a minute is enough


@dataclass
class Service:
    """The parts of a running service; ``start``/``stop`` open and close the databases and threads."""

    settings: ServiceSettings
    keys: KeyStore
    metrics: ServiceMetrics = field(default_factory=ServiceMetrics)
    draining: Draining = field(default_factory=Draining)

    def __post_init__(self) -> None:
        self.registry = Registry(self.settings.registry)
        self.train_jobs = TrainJobs(self.settings.registry, crm=self.settings.train_crm,
                                    params=self.settings.train_params)
        self.holder = ModelHolder(self.registry, batch_limit=self.settings.batch_limit,
                                  poll_interval=self.settings.poll_interval, on_switch=self.metrics.serving)
        state_dir = self.settings.state_dir
        self.buckets = TokenBuckets(self.keys.names, state_dir / RATE_FILE if state_dir else None)
        self._engine: sa.Engine | None = None
        self._predlog: PredictionLog | None = None
        self._outcomes: OutcomeStore | None = None
        self._experiments: ServiceExperiments | None = None
        self._batch_limiter: anyio.CapacityLimiter | None = None
        self.crm: CrmLeads | None = None  # the CRM database leads are scored from by id (serve --crm)
        self.params = Params()  # the settings file's, once started (experiments, monitoring, clusters)

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> Service:
        """Raises :class:`ConfigError` if the keys file is missing or invalid."""
        if settings.keys_file is None:
            raise ConfigError("the service needs an API keys file (--keys FILE): create keys with "
                              "`leadscore serve --new-key NAME`")
        return cls(settings, KeyStore.from_file(settings.keys_file))

    @property
    def predlog(self) -> PredictionLog:
        assert self._predlog is not None, "the service is not started"
        return self._predlog

    @property
    def outcomes(self) -> OutcomeStore:
        assert self._outcomes is not None, "the service is not started"
        return self._outcomes

    @property
    def experiments(self) -> ServiceExperiments:
        assert self._experiments is not None, "the service is not started"
        return self._experiments

    def start(self) -> None:
        """Open the log database, start its writer, load the active model and follow the registry."""
        s, metrics = self.settings, self.metrics
        self._engine, log_table, outcome_table = open_database(s.prediction_log_url, s.log_table,
                                                               s.outcomes_table)
        self._predlog = PredictionLog(
            self._engine, log_table, s.prediction_journal, batch_size=s.log_batch_size,
            flush_interval=s.log_flush_interval, max_queue=s.log_max_queue,
            on_depth=metrics.queue_depth.set, on_written=metrics.log_rows.inc,
            on_failure=metrics.log_failures.inc)
        self._predlog.start()
        self._outcomes = OutcomeStore(self._engine, outcome_table)
        self.params = service_params(s.train_params)
        self._experiments = ServiceExperiments(self._engine, self.registry, self.params)
        experiments, outcomes = self._experiments.store, self._outcomes.frame
        metrics.add_shared(CachedCollector(lambda: experiment_families(experiments, outcomes),
                                           ttl=EXPERIMENT_METRICS_TTL))
        metrics.add_shared(states_collector(self._monitor_states))
        metrics.add_shared(CachedCollector(lambda: training_families(self.train_jobs, self.registry.events)))
        # a batch (up to seconds of CPU) runs in a thread, one at a time per worker, so the event loop
        # keeps answering single leads (about a millisecond each: scored inline), /health and /metrics
        self._batch_limiter = anyio.CapacityLimiter(1)
        if s.crm_url:
            self.crm = CrmLeads.open(s.crm_url, str(s.crm_map) if s.crm_map else None, self.params,
                                     as_of=s.crm_as_of, scores_table=s.crm_scores_table,
                                     write_back=s.crm_write_back)
        self.holder.refresh(force=True)
        self.holder.start()

    def _monitor_states(self) -> tuple[list[CheckState], datetime | None]:
        """The states `leadscore monitor check` last saved in the store (none while it is unreachable)."""
        try:
            return load_states(self._engine) if self._engine is not None else ([], None)
        except sa.exc.SQLAlchemyError as exc:
            log.warning("cannot read the monitoring states: %s", str(getattr(exc, "orig", exc)).strip())
            return [], None

    def stop(self) -> None:
        """Stop following the registry, write every buffered log row, close the database."""
        self.holder.stop()
        if self._predlog is not None:
            self._predlog.close()
        if self.crm is not None:
            self.crm.close()
        if self._engine is not None:
            self._engine.dispose()
        self.buckets.close()
        mark_process_dead(os.getpid())

    async def score(self, served: ServedModel, leads: list[BaseModel], reasons: int, request_id: str, *,
                    batch: bool, experiment: str | None = None) -> list[dict[str, Any]]:
        """Score validated leads (one lead inline, a batch in a worker thread, one batch at a time) and
        return once the predictions are synced to the journal: nothing answered goes unlogged.

        With ``experiment``, both arms of that running experiment score the leads too and each lead's
        exposure is written to the store (in a worker thread) before the answer, which carries the
        lead's arm and that arm's score under ``experiment``.

        Raises
        ------
        StoreError
            If the prediction log refuses the rows (backlog full, shutting down, journal not writable).
        """
        if batch:
            results, rows = await anyio.to_thread.run_sync(self.score_now, served, leads, reasons, request_id,
                                                           limiter=self._batch_limiter)
        else:
            results, rows = self.score_now(served, leads, reasons, request_id)
        if experiment is not None:
            fields = [served.models.row(lead) for lead in leads]
            id_column = served.scorer.schema.id_column
            sent = [row.get(id_column) if id_column else served.models.lead_id(lead)
                    for row, lead in zip(fields, leads, strict=True)]
            ids = [None if i is None else str(i) for i in sent]
            answers = await anyio.to_thread.run_sync(self.experiments.expose, experiment, fields, ids)
            for result, answer in zip(results, answers, strict=True):
                result["experiment"] = answer
        await asyncio.wrap_future(self.predlog.submit(rows))
        self.metrics.observe_scores(served.version, [r["tier"] for r in results],
                                    [r["score"] for r in results])
        return results

    def score_now(self, served: ServedModel, leads: list[BaseModel], reasons: int,
                  request_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The scorer's output for each lead as JSON-ready dicts, and the prediction-log rows."""
        models = served.models
        id_column = served.scorer.schema.id_column
        fields_of = [models.row(lead) for lead in leads]
        if len(fields_of) == 1:  # Scorer.score_lead: the same numbers as score_frame, without a DataFrame
            row = {k: v for k, v in fields_of[0].items() if k != id_column or v is not None}
            results = [served.scorer.score_lead(row, reasons=reasons)]
        else:
            frame = pd.DataFrame(fields_of, columns=list(models.scored))
            if id_column and frame[id_column].isna().all():
                frame = frame.drop(columns=id_column)  # no ids sent: positions, as in batch scoring
            results = _records(served.scorer.score_frame(frame, reasons=reasons))
        for result, lead in zip(results, leads, strict=True):
            sent_id = None if id_column else models.lead_id(lead)
            result["lead_id"] = json_value(result["lead_id"]) if sent_id is None else sent_id
        stamp = datetime.fromisoformat(results[0]["scored_at"])
        inputs = [models.inputs(lead) for lead in leads]
        rows = [{"request_id": request_id, "lead_id": None if r["lead_id"] is None else str(r["lead_id"]),
                 "model_version": r["model_version"], "probability": r["probability"], "score": r["score"],
                 "tier": r["tier"], "inputs": fields, "outputs": r, "scored_at": stamp}
                for r, fields in zip(results, inputs, strict=True)]
        if served.shadow is not None:
            plain = [{k: v for k, v in row.items() if k != id_column} for row in fields_of]
            rows += self._shadow_rows(served, rows, plain)
        return results, rows

    def _shadow_rows(self, served: ServedModel, rows: list[dict[str, Any]],
                     leads: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The challenger's scores of the same leads (no reasons: nobody reads them) as log rows
        (``outputs.shadow`` true), never part of the answer; a challenger that fails is logged and
        counted, and the request goes on."""
        shadow = served.shadow
        assert shadow is not None
        try:
            if len(leads) == 1:  # the compiled one-lead path, as for the champion
                one = shadow.score_lead(leads[0], reasons=0)
                scored = [(one["probability"], one["score"], one["tier"])]
            else:
                frame = shadow.score_frame(pd.DataFrame(leads), reasons=0)
                scored = list(zip(frame["probability"].astype(float), frame["score"].astype(int),
                                  frame["tier"], strict=True))
        except (LeadscoreError, ValueError, KeyError) as exc:
            log.warning("challenger %s could not score a request: %s", served.shadow_version, exc)
            self.metrics.shadow_failures.inc()
            return []
        version = str(served.shadow_version)
        self.metrics.shadow_predictions.labels(version).inc(len(scored))
        return [{**row, "model_version": version, "probability": float(p), "score": int(score), "tier": tier,
                 "outputs": {"shadow": True, "probability": float(p), "score": int(score), "tier": tier,
                             "champion": row["model_version"]}}
                for row, (p, score, tier) in zip(rows, scored, strict=True)]


def _records(scored: pd.DataFrame) -> list[dict[str, Any]]:
    """``score_frame`` output as JSON-ready dicts (reasons parsed, times as ISO 8601 text)."""
    columns = {
        "lead_id": scored["lead_id"].tolist(), "probability": scored["probability"].astype(float).tolist(),
        "score": scored["score"].astype(int).tolist(), "tier": scored["tier"].tolist(),
        "action": scored["action"].tolist(), "confidence": scored["confidence"].astype(float).tolist(),
        "reasons": [json.loads(text) for text in scored["reasons"]],
        "model_version": scored["model_version"].tolist(),
        "scored_at": [stamp.isoformat() for stamp in scored["scored_at"]]}
    return [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]
