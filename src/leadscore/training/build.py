"""The one training path: from a labelled table to the champion scorer and its metadata.

:func:`train_model` runs the leakage guard, model selection (tuning, ensemble, calibration), segment
models, the business threshold and tiers; :func:`model_metadata` writes what every bundle records. The
``train`` stage and ``leadscore fit`` both call them with settings from :class:`~leadscore.core.config.Params`
(``params.yaml``, whose defaults are the dataclass defaults), so they cannot drift apart.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from leadscore.artifacts.bundle import ModelBundle
from leadscore.artifacts.metadata import base_metadata
from leadscore.core.config import DecisionParams, LeakageParams, Params
from leadscore.core.exceptions import ConfigError
from leadscore.data.profile import table_profile
from leadscore.data.schema import TableSchema, prepare_features
from leadscore.evaluation.tiers import (
    DEFAULT_TIERS,
    TIER_MODES,
    ThresholdChoice,
    Tier,
    assign_tiers,
    capacity_tiers,
    choose_threshold,
    tiers_from_config,
)
from leadscore.modeling.rules import rules_from_config
from leadscore.training.leakage import LeakageSettings, LeakFinding, check_leakage, find_leaks
from leadscore.training.segments import SegmentReport, fit_segments
from leadscore.training.selection import SelectionResult, SelectionSettings, make_folds, select_model

log = logging.getLogger(__name__)


@dataclass
class BuiltModel:
    scorer: Any                           # LeadModel or SegmentedModel: predict_proba on prepared features
    selection: SelectionResult
    segments: SegmentReport | None
    threshold: ThresholdChoice
    tiers: tuple[Tier, ...]
    leaks: list[LeakFinding]
    tier_plan: list[dict[str, Any]] = field(default_factory=list)  # share, expected conversion per tier


SMALL_TABLE = 2000  # fewer training rows than this get at most SMALL_TABLE_FOLDS folds
SMALL_TABLE_FOLDS = 3


def selection_settings(params: Params, *, candidates: Iterable[str] | None = None,
                       time_budget: float | None = None, n_trials: int | None = None,
                       n_rows: int | None = None) -> SelectionSettings:
    """Selection settings from params.yaml, with command-line overrides; small tables get fewer folds."""
    comparison = params.comparison
    folds = comparison.cv_folds
    if n_rows is not None and n_rows < SMALL_TABLE:
        folds = min(folds, SMALL_TABLE_FOLDS)
    model_params = {k: dict(v) for k, v in params.model_params.items()}
    if comparison.smote:
        model_params.setdefault("logistic", {})["smote"] = True
    budget = comparison.time_budget_seconds if time_budget is None else time_budget
    return SelectionSettings(
        candidates=tuple(candidates or comparison.candidates), metric=comparison.metric,
        cv_folds=folds, n_trials=comparison.n_trials if n_trials is None else n_trials,
        time_budget=budget or None, storage=comparison.study_storage, ensemble=comparison.ensemble,
        max_members=comparison.max_members, calibration_methods=comparison.calibration,
        model_params=model_params,
        fixed_params={k: dict(v) for k, v in params.fixed_params.items()},
        rules=rules_from_config(params.rules), seed=params.seed)


def leakage_settings(leakage: LeakageParams, seed: int) -> LeakageSettings:
    return LeakageSettings(single_feature_auc=leakage.single_feature_auc,
                           dominance_margin=leakage.dominance_margin,
                           missingness_auc=leakage.missingness_auc, seed=seed)


def guard_leakage(frame: pd.DataFrame, y: pd.Series, schema: TableSchema, *, declared: Iterable[str] = (),
                  allow: Iterable[str] = (), settings: LeakageSettings | None = None) -> list[LeakFinding]:
    """Run every leakage check; stop with :class:`LeakageError` unless each flagged column is
    declared post-outcome (and so excluded) or explicitly allowed."""
    declared = tuple(declared)
    findings = find_leaks(frame, y, schema, declared=declared, settings=settings or LeakageSettings())
    check_leakage(findings, allow=(*declared, *allow))
    for finding in findings:
        log.info("leakage check: %s %s (%s)", finding.column, finding.check, finding.message)
    return findings


def choose_business_threshold(prob: np.ndarray, y: np.ndarray, decision: DecisionParams,
                              leads_per_day: float | None = None) -> ThresholdChoice:
    """The threshold of ``decision.objective``; a per-day capacity needs ``leads_per_day``."""
    extra: dict[str, Any] = {}
    if decision.objective == "capacity" and decision.capacity_per_day:
        if not leads_per_day:
            raise ConfigError("decision.capacity_per_day needs creation times to know leads per day; "
                              "use capacity_share instead")
        extra.update(capacity_per_day=decision.capacity_per_day, leads_per_day=leads_per_day)
    elif decision.objective == "capacity":
        extra["capacity_share"] = decision.capacity_share
    elif decision.objective == "precision":
        extra["target_precision"] = decision.target_precision
    return choose_threshold(prob, y, objective=decision.objective, **extra)


def build_model(X: pd.DataFrame, y: pd.Series, schema: TableSchema, settings: SelectionSettings, *,
                   times: pd.Series | None = None, segment_column: str | None = None,
                   min_positives: int = 150, decision: DecisionParams | None = None,
                   leaks: list[LeakFinding] | None = None, progress: bool = False) -> BuiltModel:
    """Select, combine and calibrate on the training rows; add segment models; pick the threshold."""
    decision = decision or DecisionParams()
    X, y = X.reset_index(drop=True), y.reset_index(drop=True).astype(int)
    times = None if times is None else times.reset_index(drop=True)
    selection = select_model(X, y, schema, settings, times=times, progress=progress)
    scorer: Any = selection.model
    report = None
    if segment_column:
        folds = make_folds(y, times, settings.cv_folds, settings.seed)
        scorer, report = fit_segments(X, y, schema, selection, replace(settings, n_trials=0),
                                      folds, column=segment_column, min_positives=min_positives,
                                      times=times)
    covered = selection.covered
    oof = selection.champion_oof()[covered]
    leads_per_day = None
    if times is not None:
        span_days = (times.max() - times.min()) / pd.Timedelta(days=1)
        leads_per_day = len(times) / max(span_days, 1.0)
    threshold = choose_business_threshold(oof, y.to_numpy()[covered], decision, leads_per_day)
    tiers, plan = choose_tiers(decision, oof, y.to_numpy()[covered], leads_per_day)
    return BuiltModel(scorer, selection, report, threshold, tiers, list(leaks or []), plan)


def choose_tiers(decision: DecisionParams, prob: np.ndarray, y: np.ndarray,
                 leads_per_day: float | None) -> tuple[tuple[Tier, ...], list[dict[str, Any]]]:
    """The tiers of ``decision.tiers_by``: capacity (shares of leads cut on the out-of-fold
    probabilities ``prob``) or probability (the cut-offs as configured); with each tier's share and
    expected conversion on those out-of-fold leads."""
    if decision.tiers_by not in TIER_MODES:
        raise ConfigError(f"decision.tiers_by: expected one of {', '.join(TIER_MODES)}, "
                          f"got {decision.tiers_by!r}")
    if decision.tiers_by == "capacity" and decision.tiers:
        return capacity_tiers(decision.tiers, prob, y, leads_per_day=leads_per_day)
    tiers = tiers_from_config(decision.tiers) if decision.tiers else DEFAULT_TIERS
    names, _ = assign_tiers(prob, tiers)
    plan = [{"name": t.name, "min_probability": t.min_probability,
             "share": round(float((names == t.name).mean()), 4),
             "expected_conversion": round(float(y[names == t.name].mean()), 4) if (names == t.name).any()
             else None} for t in tiers]
    return tiers, plan


def build_metadata(champion: BuiltModel) -> dict[str, Any]:
    """What the bundle records about how the champion was chosen."""
    selection = champion.selection
    return {
        "champion": selection.champion,
        "weights": selection.weights,
        "candidates": {n: {"params": r.params, "cv_metrics": r.metrics,
                           "tuning": None if r.tuning is None else {
                               "trials": r.tuning.n_trials, "pruned": r.tuning.n_pruned,
                               "best_value": r.tuning.best_value, "seconds": round(r.tuning.seconds, 1)}}
                       for n, r in selection.candidates.items()},
        "calibration": {"method": selection.calibration.method, "scores": selection.calibration.scores},
        "threshold": {"value": champion.threshold.threshold, "objective": champion.threshold.objective,
                      "detail": champion.threshold.detail},
        "tiers": [{"name": t.name, "min_probability": t.min_probability, "action": t.action}
                  for t in champion.tiers],
        "tier_plan": champion.tier_plan,
        "segments": None if champion.segments is None else {
            "column": champion.segments.column,
            "table": champion.segments.table.to_dict("records")},
        "leakage_findings": [{"column": f.column, "check": f.check, "value": f.value, "message": f.message}
                             for f in champion.leaks],
        "selection_seconds": round(selection.seconds, 1),
    }


@dataclass
class TrainedModel:
    """What :func:`train_model` returns: the champion, the prepared features it was chosen on, timing."""

    champion: BuiltModel
    X: pd.DataFrame
    settings: SelectionSettings
    seconds: float


def train_model(frame: pd.DataFrame, y: pd.Series, schema: TableSchema, params: Params, *,
                times: pd.Series | None = None, guard_schema: TableSchema | None = None,
                progress: bool = False) -> TrainedModel:
    """Guard against leakage, then select, combine, calibrate, segment and threshold on ``frame``.

    Parameters
    ----------
    frame : raw training rows (one per lead); ``y`` their 0/1 labels, aligned.
    schema : the feature schema (what the model reads).
    params : every setting; ``features.exclude`` are the declared post-outcome columns and
        ``leakage.allow`` the columns allowed despite a leakage finding.
    times : creation times: time-ordered folds and a per-day capacity threshold.
    guard_schema : the schema the leakage guard checks (default ``schema``); the ``train`` stage passes
        one that keeps the declared post-outcome columns so the report shows what they would do.

    Raises
    ------
    LeakageError
        If a column would not be known at scoring time and is neither declared nor allowed.
    """
    started = time.perf_counter()
    y = y.reset_index(drop=True).astype(int)
    frame = frame.reset_index(drop=True)
    leaks = guard_leakage(frame, y, guard_schema or schema, declared=params.features.exclude,
                          allow=params.leakage.allow, settings=leakage_settings(params.leakage, params.seed))
    X = prepare_features(frame, schema)
    settings = selection_settings(params, n_rows=len(y))
    champion = build_model(X, y, schema, settings, times=times, segment_column=params.segments.column,
                              min_positives=params.segments.min_positives, decision=params.decision,
                              leaks=leaks, progress=progress)
    return TrainedModel(champion, X, settings, time.perf_counter() - started)


def reference_profile(trained: TrainedModel, schema: TableSchema) -> dict[str, Any]:
    """What drift monitoring compares new leads with: the training features and out-of-fold scores."""
    selection = trained.champion.selection
    covered = selection.covered
    return table_profile(trained.X, schema.categorical_features, scores=selection.champion_oof()[covered],
                         threshold=trained.champion.threshold.threshold)


def model_metadata(trained: TrainedModel, y: pd.Series, schema: TableSchema, params: Params, *,
                   target: str, id_column: str | None, time_column: str | None,
                   times: pd.Series | None) -> dict[str, Any]:
    """The metadata every trained bundle carries (``fit`` and the ``train`` stage alike)."""
    window = None if times is None or times.dropna().empty else \
        [pd.Timestamp(times.min()).isoformat(), pd.Timestamp(times.max()).isoformat()]
    return {
        **base_metadata(),
        "model": trained.champion.selection.champion,
        "target": target, "id_column": id_column, "time_column": time_column,
        "features": schema.describe_columns(),
        "dropped_columns": schema.dropped,
        "excluded_columns": list(params.features.exclude),
        "leakage_allowed": list(params.leakage.allow),
        "rows": int(len(y)), "positive_rate": round(float(pd.Series(y).mean()), 6),
        "training_window": window,
        "seed": params.seed,
        **build_metadata(trained.champion),
        "reference": reference_profile(trained, schema),
        "fit_seconds": round(trained.seconds, 2),
    }



def snapshot_bundle(train: pd.DataFrame, params: Params, *,
                    progress: bool = False) -> tuple[TrainedModel, ModelBundle]:
    """Train on point-in-time lead rows (``label``, ``lead_id``, ``created_at`` and the snapshot's
    features) and bundle the champion with its metadata: the one path of the ``train`` stage and of
    ``leadscore retrain``."""
    from leadscore.data.crm import snapshot_schema

    y = train["label"].astype(int)
    schema = snapshot_schema(train, params)
    trained = train_model(train, y, schema, params, times=train["created_at"], progress=progress,
                          guard_schema=snapshot_schema(train, params, keep_excluded=True))
    meta = {**model_metadata(trained, y, schema, params, target="label", id_column="lead_id",
                             time_column="created_at", times=train["created_at"]),
            "snapshot": {"snapshot_days": params.snapshot.snapshot_days,
                         "label_window_days": params.snapshot.label_window_days}}
    return trained, ModelBundle(trained.champion.scorer, schema, meta)
