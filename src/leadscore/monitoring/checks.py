"""One run of every monitoring check (:func:`run_checks`) over periods, with the alert states it raises
(the drift of a period is :func:`leadscore.monitoring.drift.drift_by_period`)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from leadscore.artifacts.paths import LOG_TABLE, OUTCOMES_TABLE
from leadscore.core.config import MonitoringParams
from leadscore.core.exceptions import DataValidationError
from leadscore.evaluation.tiers import saved_tiers
from leadscore.monitoring.alerts import (
    CheckState,
    baseline_auc,
    drift_states,
    estimate_states,
    performance_states,
)
from leadscore.monitoring.drift import DriftThresholds, drift_by_period
from leadscore.monitoring.estimate import conversion_delay_cdf, estimate_performance
from leadscore.monitoring.labels import label_scores
from leadscore.monitoring.performance import realized_performance


@dataclass
class CheckReport:
    """Everything one monitoring run measured, and the alert states drawn from it."""

    now: pd.Timestamp
    labelled: pd.DataFrame
    drift: list[dict[str, Any]]
    performance: pd.DataFrame
    estimate: pd.DataFrame
    states: list[CheckState] = field(default_factory=list)


def run_checks(scores: pd.DataFrame, outcomes: pd.DataFrame, bundle_of: Callable[[str], Any], *,
               now: pd.Timestamp, window_days: float, settings: MonitoringParams,
               by: str = "week", n_sim: int = 400) -> CheckReport:
    """Drift, realized and estimated performance of every model version in ``scores`` (logged scores
    with their input fields), and the alert states of each version's latest judged period.

    ``bundle_of(version)`` returns the version's bundle (its profile, tiers and held-out ROC-AUC).
    """
    thresholds = DriftThresholds.from_settings(settings)
    drift: list[dict[str, Any]] = []
    performance, estimate, baselines = [], [], {}
    labelled_all = label_scores(scores, outcomes, window_days=window_days, now=now)
    delay = conversion_delay_cdf(labelled_all, window_days=window_days, now=now)
    for version, part in scores.groupby(scores["model_version"].astype(str), sort=True):
        bundle = bundle_of(str(version))
        tiers = saved_tiers(bundle.metadata)
        top = tiers[0].name if tiers else None
        baselines[str(version)] = baseline_auc(bundle.metadata)
        part = part.reset_index(drop=True)
        drift += drift_by_period(part, bundle, str(version), times=part["scored_at"],
                                 probabilities=part["probability"].to_numpy(), by=by,
                                 thresholds=thresholds, ignore=settings.ignore)
        labelled = labelled_all[labelled_all["model_version"] == str(version)]
        performance.append(realized_performance(labelled, by=by, min_labelled=settings.min_labelled,
                                                top_tier=top))
        estimate.append(estimate_performance(labelled, now=now, by=by, delay=delay, top_tier=top,
                                             n_sim=n_sim))
    perf = pd.concat(performance, ignore_index=True) if performance else pd.DataFrame()
    est = pd.concat(estimate, ignore_index=True) if estimate else pd.DataFrame()
    states = [*drift_states(drift), *performance_states(perf, baselines, settings),
              *estimate_states(est, baselines, settings)]
    return CheckReport(now, labelled_all, drift, perf, est, states)


@dataclass
class StoreView:
    """A store's scores (with their input fields) and outcomes as of ``now``, and the model they are
    judged by (``bundle_of``) with the figures the checks need from it."""

    scores: pd.DataFrame
    outcomes: pd.DataFrame
    now: pd.Timestamp
    bundle_of: Callable[[str], Any]
    window_days: float
    top_tier: str | None
    baseline: float | None
    reference: Mapping[str, Any]


def load_store(url: str, *, model_dir: str | None = None, registry_dir: str = "registry",
               since: str | None = None, now: str | None = None, default_window_days: float = 90.0,
               log_table: str = LOG_TABLE, outcomes_table: str = OUTCOMES_TABLE) -> StoreView:
    """Read the store at ``url`` for a monitoring report: scores since ``since``, as of ``now`` (default:
    the newest score); models from ``model_dir`` or else each score's version in ``registry_dir``.

    Raises
    ------
    DataValidationError
        If no score was logged in the range.
    """
    from leadscore.artifacts.bundle import load_bundle
    from leadscore.artifacts.registry import Registry
    from leadscore.data.tables import utc_timestamp
    from leadscore.monitoring.outcomes import OutcomeStore
    from leadscore.monitoring.predlog import open_database, read_log

    engine, log, outcomes_tbl = open_database(url, log_table, outcomes_table)
    start = utc_timestamp(since, "since") if since else None
    scores = read_log(engine, log, since=start, inputs=True)
    if scores.empty:
        raise DataValidationError(f"no scores in {engine.url.render_as_string(hide_password=True)} "
                                  f"({log_table}){'' if start is None else f' since {start:%Y-%m-%d}'}")
    as_of = utc_timestamp(now, "now") if now else scores["scored_at"].max()
    scores = scores[scores["scored_at"] <= as_of].reset_index(drop=True)
    outcomes = OutcomeStore(engine, outcomes_tbl).frame()
    engine.dispose()
    registry = Registry(registry_dir)
    bundle_of = functools.cache(lambda version: load_bundle(model_dir, trust=True) if model_dir
                                else registry.load(version))  # one load per version

    meta = bundle_of(str(scores["model_version"].iloc[-1])).metadata
    tiers = saved_tiers(meta)
    window = float((meta.get("snapshot") or {}).get("label_window_days") or default_window_days)
    return StoreView(scores, outcomes, as_of, bundle_of, window, tiers[0].name if tiers else None,
                     baseline_auc(meta), meta.get("reference") or {})
