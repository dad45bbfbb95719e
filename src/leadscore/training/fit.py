"""Fit a lead model on a flat table: validate, split (by time when possible), compare, refit."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from leadscore.artifacts.bundle import ModelBundle
from leadscore.core.config import Params
from leadscore.core.exceptions import DataValidationError, TargetError
from leadscore.data.schema import TableSchema, infer_schema, prepare_features
from leadscore.data.tables import coerce_target
from leadscore.evaluation.holdout import holdout_summary
from leadscore.evaluation.metrics import classification_metrics
from leadscore.modeling.composite import refit as refit_model
from leadscore.training.build import model_metadata, train_model

log = logging.getLogger(__name__)

MIN_PER_CLASS = 10  # fewer labelled rows of either class cannot give a trustworthy model
MIN_PER_CLASS_VALIDATION = 5
MAX_SEGMENT_VALUES = 12  # categorical columns with at most this many values get per-segment metrics
MAX_SEGMENT_COLUMNS = 2


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


def segment_columns(frame: pd.DataFrame, schema: TableSchema, column: str | None) -> list[str]:
    """Columns to break validation quality down by: ``column`` (the segment-model column) when the
    table has it, else the first few categorical features with few values."""
    if column and column in frame.columns:
        return [column]
    few = [c for c in schema.categorical_features
           if c in frame.columns and 2 <= frame[c].nunique() <= MAX_SEGMENT_VALUES]
    return few[:MAX_SEGMENT_COLUMNS]


@dataclass
class FitResult:
    bundle: ModelBundle
    validation: dict[str, dict[str, float]]   # candidates: out-of-fold; "champion": the holdout
    chosen: str
    holdout: str


def fit_params(params: Params | None = None, *, drop: Iterable[str] = (),
               placeholders: Sequence[str] | None = None, candidates: Sequence[str] | None = None,
               time_budget: float | None = None, n_trials: int | None = None, metric: str | None = None,
               allow_leaky: Iterable[str] = (), segment: str | None = None,
               seed: int | None = None) -> Params:
    """``params`` (default: the package defaults, which are params.yaml's) with ``leadscore fit``'s
    options applied: the same settings object the ``train`` stage uses."""
    params = params or Params()
    comparison = params.comparison
    comparison = replace(
        comparison, candidates=tuple(candidates or comparison.candidates),
        metric=metric or comparison.metric,
        n_trials=comparison.n_trials if n_trials is None else n_trials,
        time_budget_seconds=comparison.time_budget_seconds if time_budget is None else float(time_budget))
    features = replace(params.features, exclude=tuple(drop),
                       placeholders=tuple(params.features.placeholders if placeholders is None
                                          else placeholders))
    return replace(params, comparison=comparison, features=features,
                   leakage=replace(params.leakage, allow=(*params.leakage.allow, *allow_leaky)),
                   segments=replace(params.segments, column=segment or params.segments.column),
                   seed=params.seed if seed is None else seed)


def _labelled(frame: pd.DataFrame, target: str,
              columns: Iterable[str | None]) -> tuple[pd.DataFrame, pd.Series]:
    """Rows with a target (open leads left out, with a warning) and the 0/1 target."""
    if target not in frame.columns:
        raise TargetError(f"target column '{target}' not found; columns are: "
                          f"{', '.join(map(str, frame.columns[:20]))}")
    for name in [c for c in columns if c]:
        if name not in frame.columns:
            raise DataValidationError(f"column '{name}' not found")
    y_all = coerce_target(frame[target], target)
    labelled = y_all.notna().to_numpy()
    if not labelled.all():
        log.warning("%d row(s) with an empty target left out of training (open leads?)",
                    int((~labelled).sum()))
    y = y_all[labelled].reset_index(drop=True).astype(int)
    return frame.loc[labelled].reset_index(drop=True), y


def fit_table(frame: pd.DataFrame, *, target: str, id_column: str | None = None,
              time_column: str | None = None, drop: Iterable[str] = (), params: Params | None = None,
              test_size: float = 0.2, refit: bool = True, progress: bool = False,
              **overrides: Any) -> FitResult:
    """Fit a scoring model on one row per lead.

    The validation rows are the most recent ones when ``time_column`` is given, else a stratified sample;
    they are scored once by the champion. The other rows go through
    :func:`~leadscore.training.build.train_model`, the same path as the ``train`` stage. With ``refit``
    the champion is then refitted on all labelled rows. ``overrides`` are the options of
    :func:`fit_params` (candidates, time_budget, n_trials, metric, allow_leaky, segment, seed,
    placeholders).
    """
    drop = tuple(drop)
    params = fit_params(params, drop=drop, **overrides)
    frame, y = _labelled(frame, target, (time_column, params.segments.column, *drop))
    check_unique_ids(frame, id_column)
    _check_classes(y, "training data")
    times = parse_times(frame[time_column], time_column) if time_column else None
    schema = infer_schema(frame, target=target, id_column=id_column, time_column=time_column,
                          drop=drop, placeholders=params.features.placeholders)
    holdout = make_holdout(y, times=times, test_size=test_size, seed=params.seed)
    _check_classes(y.iloc[holdout.valid], "validation part (raise --test-size?)",
                   MIN_PER_CLASS_VALIDATION)
    train = holdout.train
    trained = train_model(frame.iloc[train], y.iloc[train], schema, params, progress=progress,
                          times=None if times is None else times.iloc[train].reset_index(drop=True))
    champion = trained.champion
    X = prepare_features(frame, schema)
    prob = champion.scorer.predict_proba(X.iloc[holdout.valid])[:, 1]
    validation = {name: r.metrics for name, r in champion.selection.candidates.items()}
    validation["champion"] = classification_metrics(y.iloc[holdout.valid], prob)
    valid_rows = frame.iloc[holdout.valid]
    summary = holdout_summary(
        y.iloc[holdout.valid], prob, threshold=champion.threshold.threshold, tiers=champion.tiers,
        where=f"validation part ({holdout.method}), scored before "
              + ("the final refit on all rows" if refit else "any refit (none was made)"),
        segments={c: valid_rows[c] for c in segment_columns(frame, schema, params.segments.column)},
        seed=params.seed)
    scorer = refit_model(champion.scorer, X, y) if refit else champion.scorer
    metadata = {
        **model_metadata(trained, y, schema, params, target=target, id_column=id_column,
                         time_column=time_column, times=times),
        "validation": {"method": holdout.method, "holdout_metrics": validation["champion"]},
        "holdout": summary,
        "refit_on_all_rows": refit,
    }
    return FitResult(ModelBundle(scorer, schema, metadata), validation, champion.selection.champion,
                     holdout.method)
