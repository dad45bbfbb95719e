"""From a labelled training table to the champion scorer: leakage guard, model selection, segment
models, business threshold and tiers. Shared by the ``train`` stage and ``leadscore fit``."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from leadscore.core.config import DecisionParams, LeakageParams, Params
from leadscore.core.exceptions import ConfigError
from leadscore.data.schema import TableSchema
from leadscore.evaluation.decision import (
    DEFAULT_TIERS,
    ThresholdChoice,
    Tier,
    choose_threshold,
    tiers_from_config,
)
from leadscore.modeling.ensemble import LeadModel
from leadscore.modeling.rules import rules_from_config
from leadscore.modeling.segments import SegmentedModel
from leadscore.training.leakage import LeakageSettings, LeakFinding, check_leakage, find_leaks
from leadscore.training.segments import SegmentReport, fit_segments
from leadscore.training.selection import SelectionResult, SelectionSettings, make_folds, select_model

log = logging.getLogger(__name__)


@dataclass
class Champion:
    scorer: Any                           # LeadModel or SegmentedModel: predict_proba on prepared features
    selection: SelectionResult
    segments: SegmentReport | None
    threshold: ThresholdChoice
    tiers: tuple[Tier, ...]
    leaks: list[LeakFinding]


def selection_settings(params: Params, *, candidates: Iterable[str] | None = None,
                       time_budget: float | None = None, n_trials: int | None = None) -> SelectionSettings:
    """Selection settings from params.yaml, with command-line overrides."""
    comparison = params.comparison
    model_params = {k: dict(v) for k, v in params.model_params.items()}
    if comparison.smote:
        model_params.setdefault("logistic", {})["smote"] = True
    budget = comparison.time_budget_seconds if time_budget is None else time_budget
    return SelectionSettings(
        candidates=tuple(candidates or comparison.candidates), metric=comparison.metric,
        cv_folds=comparison.cv_folds, n_trials=comparison.n_trials if n_trials is None else n_trials,
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


def build_champion(X: pd.DataFrame, y: pd.Series, schema: TableSchema, settings: SelectionSettings, *,
                   times: pd.Series | None = None, segment_column: str | None = None,
                   min_positives: int = 150, decision: DecisionParams | None = None,
                   leaks: list[LeakFinding] | None = None, progress: bool = False) -> Champion:
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
    tiers = tiers_from_config(decision.tiers) if decision.tiers else DEFAULT_TIERS
    return Champion(scorer, selection, report, threshold, tuple(tiers), list(leaks or []))


def champion_metadata(champion: Champion) -> dict[str, Any]:
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
        "segments": None if champion.segments is None else {
            "column": champion.segments.column,
            "table": champion.segments.table.to_dict("records")},
        "leakage_findings": [{"column": f.column, "check": f.check, "value": f.value, "message": f.message}
                             for f in champion.leaks],
        "selection_seconds": round(selection.seconds, 1),
    }


def refit_scorer(scorer: Any, X: pd.DataFrame, y: pd.Series) -> Any:
    """The same scorer (members, weights, calibrators, segments) refitted on more rows."""
    if isinstance(scorer, SegmentedModel):
        segment = X[scorer.column].to_numpy()
        models = {value: refit_scorer(model, X[segment == value], y[segment == value])
                  for value, model in scorer.segment_models.items()}
        return SegmentedModel(scorer.column, refit_scorer(scorer.global_model, X, y), models)
    members = {name: clone(member).fit(X, y) for name, member in scorer.members.items()}
    return LeadModel(members, scorer.weights, scorer.calibrator)
