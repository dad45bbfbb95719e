"""An experiment's results: its exposures joined to the store's outcomes, only matured leads counted.

A lead counts once its conversion window (``window_days`` after assignment) has closed at ``now``: it
converted inside the window (1) or not (0). Leads still inside their window are pending: counting their
early conversions but not their non-conversions would flatter whichever arm converts faster. Outcomes
known after ``now`` are ignored (:func:`leadscore.monitoring.labels.known_by`), so any past day's
results can be rebuilt.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from leadscore.artifacts.paths import LOG_TABLE, OUTCOMES_TABLE
from leadscore.core.config import ExperimentParams
from leadscore.core.exceptions import DataValidationError
from leadscore.experiments.analysis import ExperimentAnalysis, analyse
from leadscore.experiments.assignment import ARMS
from leadscore.experiments.store import Experiment
from leadscore.monitoring.labels import label_scores


@dataclass(frozen=True)
class ExperimentResults:
    """The analysis of the matured leads, with how many are still pending per arm."""

    experiment: Experiment
    now: pd.Timestamp
    matured: pd.DataFrame
    pending: dict[str, int]
    analysis: ExperimentAnalysis

    def to_dict(self) -> dict[str, Any]:
        return {"experiment": self.experiment.to_dict(), "as_of": self.now.isoformat(),
                "matured": {arm: int((self.matured["arm"] == arm).sum()) for arm in ARMS},
                "pending": self.pending, **self.analysis.to_dict()}


def _utc(stamp: datetime | pd.Timestamp) -> pd.Timestamp:
    stamp = pd.Timestamp(stamp)
    return stamp.tz_convert("UTC") if stamp.tzinfo else stamp.tz_localize("UTC")


def matured_leads(experiment: Experiment, exposures: pd.DataFrame, outcomes: pd.DataFrame, *,
                  now: datetime | pd.Timestamp, revenue: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per exposed lead (``arm``, ``assigned_at``, ``converted`` 0/1, ``matured`` flag,
    ``covariate``, ``days_to_conversion`` and, when ``revenue`` (lead_id, revenue) is given,
    ``revenue``)."""
    now = _utc(now)
    scores = exposures.assign(model_version=exposures["arm"], scored_at=exposures["assigned_at"],
                              probability=exposures.get("covariate", float("nan")))
    labelled = label_scores(scores, outcomes, window_days=experiment.window_days, now=now)
    converted = labelled["label"].eq(1.0)
    days = (labelled["converted_at"] - labelled["scored_at"]).dt.total_seconds() / 86_400
    frame = pd.DataFrame({
        "lead_id": labelled["lead_id"], "arm": labelled["arm"], "assigned_at": labelled["scored_at"],
        "converted": converted.astype(int), "matured": labelled["matures_at"] <= now,
        "covariate": labelled["probability"].astype(float),
        "days_to_conversion": days.where(converted)})
    if revenue is not None:
        if not {"lead_id", "revenue"} <= set(revenue.columns):
            raise DataValidationError("revenue: expected columns lead_id and revenue, got "
                                      f"{', '.join(map(str, revenue.columns[:10]))}")
        amounts = revenue.assign(lead_id=revenue["lead_id"].astype(str))
        amounts = amounts.drop_duplicates("lead_id", keep="last")
        frame = frame.merge(amounts[["lead_id", "revenue"]], on="lead_id", how="left")
        frame["revenue"] = pd.to_numeric(frame["revenue"], errors="coerce").fillna(0.0)
    return frame


def experiment_results(experiment: Experiment, exposures: pd.DataFrame, outcomes: pd.DataFrame,
                       settings: ExperimentParams, *, now: datetime | pd.Timestamp,
                       revenue: pd.DataFrame | None = None) -> ExperimentResults:
    """The experiment's analysis (:func:`leadscore.experiments.analysis.analyse`) as of ``now``."""
    now = _utc(now)
    leads = matured_leads(experiment, exposures, outcomes, now=now, revenue=revenue)
    matured = leads[leads["matured"]].drop(columns="matured")
    if matured["covariate"].isna().any() or matured["covariate"].nunique() < 2:
        matured = matured.drop(columns="covariate")  # leads assigned without scores: no CUPED
    pending = leads[~leads["matured"]]
    end = now if experiment.stopped_at is None else min(now, _utc(experiment.stopped_at))
    analysis = analyse(matured, split=experiment.split, mde=experiment.mde, alpha=experiment.alpha,
                       power=settings.power, min_days=experiment.min_days,
                       started_at=_utc(experiment.created_at), now=end,
                       srm_threshold=settings.srm_threshold)
    return ExperimentResults(experiment, now, matured,
                             {arm: int((pending["arm"] == arm).sum()) for arm in ARMS}, analysis)


def results_from_store(url: str, name: str, settings: ExperimentParams, *, now: datetime | pd.Timestamp,
                       outcomes_table: str = OUTCOMES_TABLE, log_table: str = LOG_TABLE,
                       revenue: pd.DataFrame | None = None) -> ExperimentResults:
    """:func:`experiment_results` of experiment ``name`` in the store at ``url`` (its exposures and the
    store's outcomes table).

    Raises
    ------
    ExperimentNotFoundError
        If the store has no such experiment.
    StoreError
        If the store cannot be read.
    """
    from leadscore.experiments.store import ExperimentStore
    from leadscore.monitoring.outcomes import OutcomeStore
    from leadscore.monitoring.predlog import open_database

    engine, _, outcomes = open_database(url, log_table, outcomes_table)
    try:
        store = ExperimentStore(engine)
        experiment = store.get(name)
        known = OutcomeStore(engine, outcomes).frame(store.exposed_leads(name))
        return experiment_results(experiment, store.exposure_frame(name), known, settings, now=now,
                                  revenue=revenue)
    finally:
        engine.dispose()
