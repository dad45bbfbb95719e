"""Fit a lead model on a flat table: validate, split (by time when possible), compare, refit."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from leadscore.bundle import ModelBundle, package_versions
from leadscore.config import DEFAULT_PLACEHOLDERS
from leadscore.data import coerce_target
from leadscore.evaluation import classification_metrics
from leadscore.exceptions import DataValidationError, TargetError
from leadscore.models import CANDIDATES, make_model
from leadscore.schema import TableSchema, infer_schema, prepare_features

log = logging.getLogger(__name__)

MIN_PER_CLASS = 10  # fewer labelled rows of either class cannot give a trustworthy model
MIN_PER_CLASS_VALIDATION = 5


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


def fit_pipeline(name: str, schema: TableSchema, X: pd.DataFrame, y: pd.Series,
                 params: dict[str, Any] | None = None, seed: int = 42) -> Pipeline:
    """Fit candidate ``name`` on prepared features ``X``."""
    return make_model(name, schema, params, seed).fit(X, y.astype(int).to_numpy())


@dataclass
class FitResult:
    bundle: ModelBundle
    validation: dict[str, dict[str, float]]
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
    model: str = "auto",
    params: dict[str, dict[str, Any]] | None = None,
    test_size: float = 0.2,
    seed: int = 42,
    refit: bool = True,
) -> FitResult:
    """Fit a scoring model on one row per lead.

    The validation rows are the most recent ones when ``time_column`` is given, else a stratified
    sample. With ``model="auto"`` every candidate is fitted and the best validation ROC-AUC wins. With
    ``refit`` the winner is refitted on all labelled rows, so recent leads also teach the final model.
    """
    started = time.perf_counter()
    if target not in frame.columns:
        raise TargetError(f"target column '{target}' not found; columns are: "
                          f"{', '.join(map(str, frame.columns[:20]))}")
    for name in [c for c in (time_column, *drop) if c]:
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
    names = sorted(CANDIDATES) if model == "auto" else [model]
    params = params or {}
    validation: dict[str, dict[str, float]] = {}
    for name in names:
        fitted = fit_pipeline(name, schema, X.iloc[holdout.train], y.iloc[holdout.train],
                              params.get(name), seed)
        prob = fitted.predict_proba(X.iloc[holdout.valid])[:, 1]
        validation[name] = classification_metrics(y.iloc[holdout.valid], prob)
        log.info("%s: validation ROC-AUC %.4f", name, validation[name]["roc_auc"])
    chosen = max(validation, key=lambda n: validation[n]["roc_auc"])
    rows = np.arange(len(y)) if refit else holdout.train
    final = fit_pipeline(chosen, schema, X.iloc[rows], y.iloc[rows], params.get(chosen), seed)
    metadata = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": chosen,
        "params": final.named_steps["model"].get_params(),
        "features": [{"name": c.name, "kind": c.kind, "required": c.required,
                      "missing_rate": c.missing_rate} for c in schema.columns],
        "dropped_columns": schema.dropped,
        "target": target, "id_column": id_column, "time_column": time_column,
        "rows": int(len(y)), "positive_rate": round(float(y.mean()), 6),
        "training_window": None if times is None else
        [times.min().isoformat(), times.max().isoformat()],
        "validation": {"method": holdout.method, "metrics": validation},
        "refit_on_all_rows": refit,
        "fit_seconds": round(time.perf_counter() - started, 2),
        "packages": package_versions(),
    }
    return FitResult(ModelBundle(final, schema, metadata), validation, chosen, holdout.method)
