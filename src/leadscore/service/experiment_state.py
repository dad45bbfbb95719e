"""Experiments in the running service: scoring a lead inside a running experiment, and the arms' models.

A request scored with ``?experiment=NAME`` is scored by the served model as usual (logged as usual) and
by both arms; the lead's exposure (arm, time, both arms' scores) is written to the store before the
answer goes out, and the answer carries an ``experiment`` object with the lead's arm and that arm's
score. The arms' model versions are loaded from the registry once and kept.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from leadscore.artifacts.registry import Registry
from leadscore.core.config import Params, load_params
from leadscore.core.exceptions import DataValidationError, LeadscoreError
from leadscore.core.jsonsafe import json_safe
from leadscore.experiments.arms import ArmScorers, arm_answer, expose_leads
from leadscore.experiments.assignment import ARMS
from leadscore.experiments.results import experiment_results, matured_leads
from leadscore.experiments.store import Experiment, ExperimentStore
from leadscore.monitoring.outcomes import OutcomeStore
from leadscore.scoring.scorer import Scorer

log = logging.getLogger(__name__)


def service_params(path: Path | None) -> Params:
    """The settings the service reads experiment defaults and the rules from: ``path``, else
    ``params.yaml`` in the working folder when there is one, else the package defaults."""
    if path is not None:
        return load_params(path)
    return load_params("params.yaml") if Path("params.yaml").exists() else Params()


class ServiceExperiments:
    """The store's experiments plus a cache of the arms' scorers."""

    def __init__(self, engine: sa.Engine, registry: Registry, params: Params) -> None:
        self.store = ExperimentStore(engine)
        self.registry, self.params = registry, params
        self._scorers: dict[str, Scorer] = {}
        self._lock = threading.Lock()

    def _scorer(self, version: str) -> Scorer:
        with self._lock:
            if version not in self._scorers:
                self._scorers[version] = Scorer(self.registry.load(version), version)
            return self._scorers[version]

    def arms(self, experiment: Experiment) -> ArmScorers:
        return ArmScorers.load(experiment, self._scorer)

    def expose(self, name: str, fields: Sequence[dict[str, Any]],
               lead_ids: Sequence[str | None]) -> list[dict[str, Any]]:
        """Score raw lead rows with both arms of the running experiment ``name``, record the exposures
        (the first one of each lead wins) and return each lead's ``experiment`` answer.

        Raises
        ------
        ExperimentNotFoundError, ExperimentStateError
            If there is no such experiment or it is stopped.
        DataValidationError
            If a lead has no id (an arm cannot be assigned without one).
        """
        experiment = self.store.running(name)
        missing = [i for i, lead in enumerate(lead_ids) if lead is None or str(lead) == ""]
        if missing:
            raise DataValidationError(f"experiment {name!r}: every lead needs a lead id to get an arm; "
                                      f"lead {missing[0] + 1} has none")
        frame = pd.DataFrame(list(fields))
        records, rows = expose_leads(self.store, experiment, self.arms(experiment), frame, lead_ids)
        return [arm_answer(experiment, row["arm"], record) for row, record in zip(rows, records, strict=True)]

    def results(self, name: str, outcomes: OutcomeStore) -> dict[str, Any]:
        """The analysis of experiment ``name`` now (as ``experiments results --json``), JSON-ready, without
        the assignment salt (with it a client could tell each lead's arm in advance).

        Raises
        ------
        ExperimentNotFoundError
            If there is no such experiment.
        """
        experiment = self.store.get(name)
        found = experiment_results(experiment, self.store.exposure_frame(name),
                                   outcomes.frame(self.store.exposed_leads(name)), self.params.experiments,
                                   now=pd.Timestamp.now(tz="UTC")).to_dict()
        found["experiment"].pop("salt", None)
        return json_safe(found)


def experiment_families(store: ExperimentStore, outcomes: Callable[[], pd.DataFrame]) -> list[Metric]:
    """Per experiment and arm: ``leadscore_experiment_assigned_leads`` (with the experiment's status),
    ``leadscore_experiment_matured_leads`` and ``leadscore_experiment_conversion_rate`` (conversion within
    the window among the matured leads, as `experiments results` counts them); none while the store
    cannot be read."""
    assigned = GaugeMetricFamily("leadscore_experiment_assigned_leads", "Leads assigned to each arm",
                                 labels=["experiment", "arm", "status"])
    matured = GaugeMetricFamily("leadscore_experiment_matured_leads",
                                "Leads of each arm whose conversion window has closed",
                                labels=["experiment", "arm"])
    rate = GaugeMetricFamily("leadscore_experiment_conversion_rate",
                             "Conversion within the window among each arm's matured leads",
                             labels=["experiment", "arm"])
    try:
        experiments = store.list_experiments()
        known = outcomes() if experiments else None
        now = pd.Timestamp.now(tz="UTC")
        for experiment in experiments:
            counts = store.counts(experiment.name)
            leads = matured_leads(experiment, store.exposure_frame(experiment.name), known, now=now) \
                if known is not None and any(counts.values()) else None
            for arm in ARMS:
                assigned.add_metric([experiment.name, arm, experiment.status], counts[arm])
                if leads is None:
                    continue
                mine = leads[leads["matured"] & leads["arm"].eq(arm)]
                matured.add_metric([experiment.name, arm], len(mine))
                if len(mine):
                    rate.add_metric([experiment.name, arm], float(mine["converted"].mean()))
    except (LeadscoreError, sa.exc.SQLAlchemyError) as exc:
        log.warning("cannot read the experiments for /metrics: %s", exc)
        return []
    return [assigned, matured, rate]
