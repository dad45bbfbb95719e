"""Experiments in the running service: scoring a lead inside a running experiment, and the arms' models.

A request scored with ``?experiment=NAME`` is scored by the served model as usual (logged as usual) and
by both arms; the lead's exposure (arm, time, both arms' scores) is written to the store before the
answer goes out, and the answer carries an ``experiment`` object with the lead's arm and that arm's
score. The arms' model versions are loaded from the registry once and kept.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from leadscore.artifacts.registry import Registry
from leadscore.core.config import Params, load_params
from leadscore.core.exceptions import DataValidationError
from leadscore.experiments.arms import ArmScorers, arm_answer
from leadscore.experiments.store import Experiment, ExperimentStore
from leadscore.scoring.scorer import Scorer


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
        scores = self.arms(experiment).score(pd.DataFrame(list(fields)))
        records = [{str(k): v for k, v in r.items()} for r in scores.to_dict("records")]
        rows = self.store.record(experiment, [{"lead_id": str(lead), **record}
                                              for lead, record in zip(lead_ids, records, strict=True)])
        return [arm_answer(experiment, row["arm"], record) for row, record in zip(rows, records, strict=True)]
