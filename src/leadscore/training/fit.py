"""Fit a lead model on a flat table: validate, split (by time when possible), compare, refit."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from leadscore.artifacts.bundle import ModelBundle, package_versions
from leadscore.core.config import DEFAULT_PLACEHOLDERS, DecisionParams
from leadscore.core.exceptions import DataValidationError, TargetError
from leadscore.data.schema import infer_schema, prepare_features
from leadscore.data.tables import coerce_target
from leadscore.evaluation.metrics import classification_metrics
from leadscore.training.build import build_champion, champion_metadata, guard_leakage, refit_scorer
from leadscore.training.leakage import LeakageSettings
from leadscore.training.selection import SelectionSettings

log = logging.getLogger(__name__)

MIN_PER_CLASS = 10  # fewer labelled rows of either class cannot give a trustworthy model
MIN_PER_CLASS_VALIDATION = 5
# Random forest is left out by default: slower, and rarely better than the boosted trees.
DEFAULT_FIT_CANDIDATES = ("logistic", "lightgbm", "xgboost", "catboost")


@dataclass(frozen=True)
class Holdout:
    """Row positions of the training and validation parts, and how they were chosen."""

    train: np.ndarray
    valid: np.ndarray
    method: str


def check_unique_ids(frame: pd.DataFrame, id_column: str | None) -> None:
    """Raise if ``id_column`` is absent or holds duplicates or blanks."""
    if id_column is None:
        return
    if id_column not in frame.columns:
        raise DataValidationError(f"id column '{id_column}' not found")
    ids = frame[id_column]
    if ids.isna().any():
        raise DataValidationError(f"id column '{id_column}' has {int(ids.isna().sum())} empty value(s)")
    dupes = ids[ids.duplicated(keep=False)]
    if not dupes.empty:
        examples = ", ".join(map(str, pd.unique(dupes)[:5]))
        raise DataValidationError(
            f"id column '{id_column}' has {dupes.nunique()} duplicated value(s), e.g. {examples}"
        )


def parse_times(values: pd.Series, name: str) -> pd.Series:
    """Parse a time column to UTC timestamps; raise if most values are not dates."""
    if pd.api.types.is_datetime64_any_dtype(values):
        stamps = pd.to_datetime(values, utc=True)
    else:
        stamps = pd.to_datetime(values, errors="coerce", format="mixed", utc=True)
    if stamps.isna().mean() > 0.05:
        raise DataValidationError(
            f"time column '{name}': {int(stamps.isna().sum())} of {len(stamps)} values are not dates"
        )
    return stamps


def make_holdout(y: pd.Series, *, times: pd.Series | None = None, test_size: float = 0.2,
                 seed: int = 42) -> Holdout:
    """The most recent ``test_size`` share by time when ``times`` is given, else a stratified split."""
    positions = np.arange(len(y))
    if times is not None:
        order = np.argsort(times.to_numpy(), kind="stable")
        known = order[~times.isna().to_numpy()[order]]
        cut = int(round(len(known) * (1 - test_size)))
        valid = np.sort(known[cut:])
        train = np.setdiff1d(positions, valid)
        return Holdout(train, valid, f"time: last {test_size:.0%} of rows by time as validation")
    train, valid = train_test_split(positions, test_size=test_size, random_state=seed,
                                    stratify=y.to_numpy())
    return Holdout(np.sort(train), np.sort(valid), f"stratified random {test_size:.0%} validation")


def _check_classes(y: pd.Series, where: str, minimum: int = MIN_PER_CLASS) -> None:
    counts = y.value_counts()
    if counts.get(0, 0) < minimum or counts.get(1, 0) < minimum:
        raise TargetError(
            f"{where}: need at least {minimum} rows of each class, "
            f"found {int(counts.get(1, 0))} positive and {int(counts.get(0, 0))} negative"
        )


@dataclass
class FitResult:
    bundle: ModelBundle
    validation: dict[str, dict[str, float]]   # candidates: out-of-fold; "champion": the holdout
    chosen: str
    holdout: str


def fit_table(
    frame: pd.DataFrame,
    *,
    target: str,
    id_column: str | None = None,
    time_column: str | None = None,
    drop: Iterable[str] = (),
    placeholders: Sequence[str] = DEFAULT_PLACEHOLDERS,
    candidates: Sequence[str] = DEFAULT_FIT_CANDIDATES,
    time_budget: float | None = None,
    n_trials: int = 0,
    metric: str = "roc_auc",
    allow_leaky: Iterable[str] = (),
    segment: str | None = None,
    decision: DecisionParams | None = None,
    test_size: float = 0.2,
    seed: int = 42,
    refit: bool = True,
    progress: bool = False,
) -> FitResult:
    """Fit a scoring model on one row per lead.

    The validation rows are the most recent ones when ``time_column`` is given, else a stratified sample;
    they are scored once by the champion. On the other rows: the leakage guard, then every candidate on
    out-of-fold predictions (tuned within ``time_budget`` seconds), an ensemble if it wins, calibration
    and the business threshold. With ``refit`` the champion is refitted on all labelled rows.
    """
    started = time.perf_counter()
    decision = decision or DecisionParams(objective="f1", capacity_share=None, target_precision=None)
    if target not in frame.columns:
        raise TargetError(f"target column '{target}' not found; columns are: "
                          f"{', '.join(map(str, frame.columns[:20]))}")
    for name in [c for c in (time_column, segment, *drop) if c]:
        if name not in frame.columns:
            raise DataValidationError(f"column '{name}' not found")
    y_all = coerce_target(frame[target], target)
    labelled = y_all.notna().to_numpy()
    if not labelled.all():
        log.warning("%d row(s) with an empty target left out of training (open leads?)",
                    int((~labelled).sum()))
    frame = frame.loc[labelled].reset_index(drop=True)
    y = y_all[labelled].reset_index(drop=True).astype(int)
    check_unique_ids(frame, id_column)
    _check_classes(y, "training data")
    times = parse_times(frame[time_column], time_column) if time_column else None
    schema = infer_schema(frame, target=target, id_column=id_column, time_column=time_column,
                          drop=drop, placeholders=placeholders)
    X = prepare_features(frame, schema)
    holdout = make_holdout(y, times=times, test_size=test_size, seed=seed)
    _check_classes(y.iloc[holdout.valid], "validation part (raise --test-size?)",
                   MIN_PER_CLASS_VALIDATION)
    train = holdout.train
    leaks = guard_leakage(frame.iloc[train], y.iloc[train], schema, allow=allow_leaky,
                          settings=LeakageSettings(seed=seed))
    settings = SelectionSettings(candidates=tuple(candidates), metric=metric, n_trials=n_trials,
                                 time_budget=time_budget or None, seed=seed,
                                 cv_folds=3 if len(train) < 2000 else 4)
    champion = build_champion(X.iloc[train], y.iloc[train], schema, settings,
                              times=None if times is None else times.iloc[train],
                              segment_column=segment, decision=decision, leaks=leaks, progress=progress)
    prob = champion.scorer.predict_proba(X.iloc[holdout.valid])[:, 1]
    validation = {name: r.metrics for name, r in champion.selection.candidates.items()}
    validation["champion"] = classification_metrics(y.iloc[holdout.valid], prob)
    scorer = refit_scorer(champion.scorer, X, y) if refit else champion.scorer
    metadata = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": champion.selection.champion,
        "features": schema.describe_columns(),
        "dropped_columns": schema.dropped,
        "target": target, "id_column": id_column, "time_column": time_column,
        "rows": int(len(y)), "positive_rate": round(float(y.mean()), 6),
        "training_window": None if times is None else
        [times.min().isoformat(), times.max().isoformat()],
        "validation": {"method": holdout.method, "holdout_metrics": validation["champion"]},
        "refit_on_all_rows": refit,
        **champion_metadata(champion),
        "fit_seconds": round(time.perf_counter() - started, 2),
        "packages": package_versions(),
    }
    return FitResult(ModelBundle(scorer, schema, metadata), validation, champion.selection.champion,
                     holdout.method)
