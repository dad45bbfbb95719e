"""Hyperparameter search for one candidate with Optuna, scored by cross-validation on given folds.

The first trial of a new study evaluates the candidate's defaults, so the best result is never worse than
the defaults on these folds. With ``storage`` the study lives in SQLite and a re-run continues it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import optuna
import pandas as pd

from leadscore.core.exceptions import ConfigError, DataValidationError, LeadscoreError
from leadscore.data.schema import TableSchema
from leadscore.evaluation.metrics import SELECTION_METRICS, get_metric
from leadscore.modeling.candidates import CANDIDATES, make_model, search_defaults, suggest_params

Folds = Sequence[tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class TuningResult:
    """Outcome of :func:`tune`; ``best_params`` include ``base_params`` and feed ``make_model`` directly."""

    name: str
    best_params: dict[str, Any]
    best_value: float
    metric: str
    n_trials: int  # completed trials in the study, including earlier runs
    n_pruned: int
    seconds: float
    study_name: str


def _check_inputs(name: str, metric: str, y: pd.Series, folds: Folds) -> None:
    if name not in CANDIDATES:
        raise ConfigError(f"unknown model {name!r}: expected one of {', '.join(sorted(CANDIDATES))}")
    get_metric(metric, SELECTION_METRICS)
    if not folds:
        raise DataValidationError("expected at least one CV fold, got none")
    for i, (train, valid) in enumerate(folds):
        for part, rows in (("train", train), ("validation", valid)):
            if y.iloc[rows].nunique() < 2:
                raise DataValidationError(f"fold {i} {part} rows: expected both classes, got one")


def _storage_url(storage: str | Path | None) -> str | None:
    if storage is None:
        return None
    if isinstance(storage, str) and "://" in storage:
        return storage
    path = Path(storage)
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def _direction(metric: str) -> Literal["maximize", "minimize"]:
    return "maximize" if get_metric(metric).higher_is_better else "minimize"


def _objective(name: str, schema: TableSchema, X: pd.DataFrame, y: pd.Series, folds: Folds,
               base: dict[str, Any], seed: int, metric: str,
               fixed: dict[str, Any]) -> Callable[[optuna.Trial], float]:
    score = get_metric(metric, SELECTION_METRICS)
    target = y.astype(int).to_numpy()

    def objective(trial: optuna.Trial) -> float:
        params = {**base, **suggest_params(name, trial, skip=fixed), **fixed}
        scores: list[float] = []
        for step, (train, valid) in enumerate(folds):
            model = make_model(name, schema, params, seed).fit(X.iloc[train], target[train])
            scores.append(float(score(target[valid], model.predict_proba(X.iloc[valid])[:, 1])))
            trial.report(float(np.mean(scores)), step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        trial.set_user_attr("fold_scores", scores)
        return float(np.mean(scores))

    return objective


def _open_study(name: str, metric: str, url: str | None, study_name: str, seed: int,
                base: dict[str, Any], fixed: dict[str, Any]) -> optuna.Study:
    study = optuna.create_study(
        storage=url, study_name=study_name, direction=_direction(metric), load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1),
    )
    setup = {"model": name, "metric": metric, "base_params": json.loads(json.dumps(base, default=str))}
    if fixed:  # studies made before fixed parameters existed keep their settings
        setup["fixed_params"] = json.loads(json.dumps(fixed, default=str))
    if not study.trials:
        for key, value in setup.items():
            study.set_user_attr(key, value)
        study.enqueue_trial({k: v for k, v in search_defaults(name).items() if k not in fixed})
    else:
        found = {key: study.user_attrs.get(key) for key in setup}
        if found != setup:
            raise ConfigError(f"study {study_name!r} in {url}: expected settings {setup}, got {found}; "
                              "pass another study_name or storage")
    return study


def tune(
    name: str, schema: TableSchema, X: pd.DataFrame, y: pd.Series, folds: Folds,  # noqa: N803
    *, n_trials: int = 20, timeout: float | None = None, seed: int = 42, metric: str = "roc_auc",
    storage: str | Path | None = None, study_name: str | None = None,
    base_params: Mapping[str, Any] | None = None, fixed_params: Mapping[str, Any] | None = None,
) -> TuningResult:
    """Search hyperparameters of candidate ``name`` by mean CV ``metric`` over ``folds``.

    Parameters
    ----------
    X, y : prepared features and the 0/1 target, aligned; ``folds`` hold positions into them.
    n_trials : completed trials wanted in the study; a continued study only runs the missing ones.
    timeout : seconds after which no new trial starts (whichever of the two budgets ends first).
    metric : ``"roc_auc"`` (maximised), ``"log_loss"`` or ``"brier"`` (minimised).
    storage : SQLite file (or a database URL) keeping the study, so a re-run continues it.
    study_name : defaults to ``"{name}-{metric}"``.
    base_params : parameters under the searched ones, e.g. ``{"smote": True}``.
    fixed_params : parameters never searched, even if in the search space (e.g. ``{"max_depth": 3}``).

    Raises
    ------
    ConfigError
        Unknown model or metric, or a stored study created with other settings.
    DataValidationError
        A fold without both classes.
    """
    started = time.perf_counter()
    _check_inputs(name, metric, y, folds)
    base = dict(base_params or {})
    fixed = dict(fixed_params or {})
    study_name = study_name or f"{name}-{metric}"
    url = _storage_url(storage)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = _open_study(name, metric, url, study_name, seed, base, fixed)
        done = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
        if n_trials - done > 0:
            study.optimize(_objective(name, schema, X, y, folds, base, seed, metric, fixed),
                           n_trials=n_trials - done, timeout=timeout)
    finally:
        optuna.logging.set_verbosity(verbosity)
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        raise LeadscoreError(f"study {study_name!r}: expected at least one completed trial, got none")
    pruned = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.PRUNED,))
    return TuningResult(
        name=name, best_params={**base, **study.best_params, **fixed}, best_value=float(study.best_value),
        metric=metric, n_trials=len(complete), n_pruned=len(pruned),
        seconds=round(time.perf_counter() - started, 3), study_name=study_name,
    )
