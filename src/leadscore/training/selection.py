"""Model selection: out-of-fold predictions for every candidate, optional Optuna tuning, a weighted
ensemble kept only when it beats the best single model, calibration chosen on out-of-fold predictions,
and a final refit on all training rows.

Only the training rows given here are ever seen: the caller keeps the test period apart.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import StratifiedKFold, TimeSeriesSplit
from tqdm.auto import tqdm

from leadscore.core.exceptions import ConfigError
from leadscore.data.schema import TableSchema
from leadscore.evaluation.metrics import better, classification_metrics, sort_key
from leadscore.modeling.calibration import CalibrationChoice, choose_calibration
from leadscore.modeling.candidates import CANDIDATES, make_model
from leadscore.modeling.ensemble import LeadModel, optimize_weights
from leadscore.modeling.rules import Rule, RuleScorer
from leadscore.training.tuning import TuningResult, tune

log = logging.getLogger(__name__)

RULES = "rules"
ENSEMBLE = "ensemble"
# Relative cost of one fit, used to share a time budget across candidates.
TUNING_COST = {"logistic": 0.5, "random_forest": 1.0, "xgboost": 1.5, "lightgbm": 1.5, "catboost": 2.0}

Folds = list[tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class SelectionSettings:
    """How candidates are compared, tuned, combined and calibrated."""

    candidates: tuple[str, ...] = ("logistic", "lightgbm")
    metric: str = "roc_auc"
    cv_folds: int = 4
    n_trials: int = 0                      # Optuna trials per candidate (0 = use the declared params)
    time_budget: float | None = None       # seconds for all tuning, shared by cost
    storage: str | None = None             # SQLite file for persistent Optuna studies
    ensemble: bool = True
    max_members: int = 3
    calibration_methods: tuple[str, ...] = ("none", "platt", "isotonic")
    model_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    fixed_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # never tuned
    rules: tuple[Rule, ...] = ()
    seed: int = 42


@dataclass
class CandidateResult:
    name: str
    params: dict[str, Any]
    oof: np.ndarray                         # NaN where a row was never in a validation fold
    metrics: dict[str, float]
    cv_seconds: float
    tuning: TuningResult | None = None


@dataclass
class SelectionResult:
    model: LeadModel
    champion: str                           # a candidate name or "ensemble"
    candidates: dict[str, CandidateResult]
    weights: dict[str, float]
    calibration: CalibrationChoice
    table: pd.DataFrame                     # out-of-fold metrics per candidate (+ ensemble)
    covered: np.ndarray                     # rows with out-of-fold predictions
    seconds: float

    def champion_oof(self, *, calibrated: bool = True) -> np.ndarray:
        """The champion's out-of-fold probability per training row (NaN where never validated)."""
        raw = np.asarray(sum(w * self.candidates[n].oof for n, w in self.weights.items()), float)
        if not calibrated:
            return raw
        out = np.full(len(raw), np.nan)
        out[self.covered] = self.calibration.calibrator.transform(raw[self.covered])
        return out


def expanding_folds(times: pd.Series, n_folds: int) -> Folds:
    """Train on everything before each block of time, validate on the block (no look-ahead)."""
    order = np.argsort(times.to_numpy(), kind="stable")
    return [(order[train], order[valid]) for train, valid in TimeSeriesSplit(n_folds).split(order)]


def make_folds(y: pd.Series, times: pd.Series | None, n_folds: int, seed: int) -> Folds:
    """Expanding-window folds when times are known, else stratified K-fold."""
    if times is not None:
        return expanding_folds(times.reset_index(drop=True), n_folds)
    splitter = StratifiedKFold(n_folds, shuffle=True, random_state=seed)
    return [(tr, va) for tr, va in splitter.split(np.zeros(len(y)), y.to_numpy())]


def build_estimator(name: str, schema: TableSchema, params: Mapping[str, Any],
                    settings: SelectionSettings) -> Any:
    """An unfitted candidate: the rules baseline or a model pipeline."""
    if name == RULES:
        return RuleScorer(rules=settings.rules)
    return make_model(name, schema, dict(params), settings.seed)


def _oof(estimator: Any, X: pd.DataFrame, y: pd.Series, folds: Folds) -> np.ndarray:
    oof = np.full(len(y), np.nan)
    for train, valid in folds:
        fitted = clone(estimator).fit(X.iloc[train], y.iloc[train])
        oof[valid] = fitted.predict_proba(X.iloc[valid])[:, 1]
    return oof


def data_key(X: pd.DataFrame, y: pd.Series, folds: Folds) -> str:
    """A short fingerprint of the training data and folds: a persistent Optuna study is continued only
    on the same data (new data starts a new study instead of mixing stale trial values)."""
    digest = hashlib.sha256()
    digest.update(pd.util.hash_pandas_object(X, index=False).to_numpy().tobytes())
    digest.update(y.to_numpy().tobytes())
    for train, valid in folds:
        digest.update(train.tobytes() + valid.tobytes())
    return digest.hexdigest()[:12]


def _budgets(names: Sequence[str], settings: SelectionSettings) -> dict[str, float | None]:
    tunable = [n for n in names if n in TUNING_COST]
    if settings.time_budget is None or not tunable:
        return {n: None for n in names}
    total = sum(TUNING_COST[n] for n in tunable)
    return {n: settings.time_budget * TUNING_COST[n] / total if n in tunable else None for n in names}


def _check(settings: SelectionSettings) -> list[str]:
    unknown = [n for n in settings.candidates if n != RULES and n not in CANDIDATES]
    if unknown:
        raise ConfigError(f"unknown candidate(s) {unknown}: "
                          f"expected {RULES!r} or one of {sorted(CANDIDATES)}")
    names = [n for n in settings.candidates if n != RULES or settings.rules]
    if not [n for n in names if n != RULES]:
        raise ConfigError("at least one machine-learning candidate is needed")
    return names


def _settings_key(params: Mapping[str, Any], fixed: Mapping[str, Any]) -> str:
    """Short hash of a candidate's declared and fixed parameters: other settings, another study."""
    text = json.dumps({"params": params, "fixed": fixed}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def evaluate_candidates(X: pd.DataFrame, y: pd.Series, schema: TableSchema, folds: Folds,
                        settings: SelectionSettings, *, progress: bool = False) -> dict[str, CandidateResult]:
    """Tune (if a budget is set) and cross-validate every candidate on the same folds."""
    names = _check(settings)
    budgets = _budgets(names, settings)
    tuned = settings.n_trials > 0 or settings.time_budget is not None
    key = data_key(X, y, folds) if tuned else ""
    results: dict[str, CandidateResult] = {}
    for name in tqdm(names, desc="candidates", disable=not progress):
        fixed = dict(settings.fixed_params.get(name, {}))
        params = {**settings.model_params.get(name, {}), **fixed}
        tuning = None
        if tuned and name in TUNING_COST:
            trials = settings.n_trials if settings.n_trials > 0 else 10_000  # the time budget binds
            tuning = tune(name, schema, X, y, folds, n_trials=trials, timeout=budgets[name],
                          seed=settings.seed, metric=settings.metric, storage=settings.storage,
                          study_name=f"{name}-{settings.metric}-{key}-{_settings_key(params, fixed)}",
                          base_params=params, fixed_params=fixed)
            params = {**params, **tuning.best_params}
        started = time.perf_counter()
        oof = _oof(build_estimator(name, schema, params, settings), X, y, folds)
        seen = ~np.isnan(oof)
        metrics = classification_metrics(y.to_numpy()[seen], oof[seen])
        results[name] = CandidateResult(name, params, oof, metrics, time.perf_counter() - started, tuning)
        log.info("%s: out-of-fold %s %.4f", name, settings.metric, metrics[settings.metric])
    return results


def _ensemble(results: Mapping[str, CandidateResult], y: np.ndarray, covered: np.ndarray,
              settings: SelectionSettings) -> tuple[dict[str, float], dict[str, float] | None]:
    ranked = sorted((r for r in results.values() if r.name != RULES),
                    key=lambda r: sort_key(settings.metric)(r.metrics[settings.metric]))
    members = [r.name for r in ranked[:settings.max_members]]
    if not settings.ensemble or len(members) < 2:
        return {members[0]: 1.0}, None
    oof = np.column_stack([results[n].oof[covered] for n in members])
    weights = optimize_weights(oof, y[covered])
    kept = {n: float(w) for n, w in zip(members, weights, strict=True) if w > 0}
    blend = oof @ weights
    return kept, classification_metrics(y[covered], blend)


def select_model(X: pd.DataFrame, y: pd.Series, schema: TableSchema, settings: SelectionSettings, *,
                 times: pd.Series | None = None, progress: bool = False) -> SelectionResult:
    """Compare, tune, combine and calibrate on ``X``/``y``, then refit the champion on all rows."""
    started = time.perf_counter()
    X, y = X.reset_index(drop=True), y.reset_index(drop=True).astype(int)
    folds = make_folds(y, times, settings.cv_folds, settings.seed)
    results = evaluate_candidates(X, y, schema, folds, settings, progress=progress)
    covered = ~np.isnan(next(iter(results.values())).oof)
    yv = y.to_numpy()
    weights, blend_metrics = _ensemble(results, yv, covered, settings)
    best = max((r for r in results.values() if r.name != RULES),
               key=lambda r: -sort_key(settings.metric)(r.metrics[settings.metric]))
    rows = {n: r.metrics for n, r in results.items()}
    if blend_metrics is not None:
        rows[ENSEMBLE] = blend_metrics
    use_blend = blend_metrics is not None and len(weights) > 1 and better(
        settings.metric, blend_metrics[settings.metric], best.metrics[settings.metric])
    if not use_blend:
        weights = {best.name: 1.0}
    champion = ENSEMBLE if use_blend else best.name
    champion_oof = sum(w * results[n].oof[covered] for n, w in weights.items())
    order = None if times is None else times.reset_index(drop=True)[covered].to_numpy()
    calibration = choose_calibration(np.asarray(champion_oof), yv[covered], order=order,
                                     methods=settings.calibration_methods, seed=settings.seed)
    members = {n: build_estimator(n, schema, results[n].params, settings).fit(X, y) for n in weights}
    model = LeadModel(members, weights, calibration.calibrator)
    table = pd.DataFrame(rows).T
    table["cv_seconds"] = pd.Series({n: round(r.cv_seconds, 2) for n, r in results.items()})
    return SelectionResult(model, champion, results, weights, calibration, table, covered,
                           time.perf_counter() - started)
