"""Leakage guard: flag columns that would not be known when a lead is scored, before any training.

Every check judges a RAW column (several prepared columns of one raw column count as one):

* ``declared``: named by the user as filled after the outcome;
* ``single_feature_auc``: the column alone predicts the label almost perfectly;
* ``dominates_others``: the column alone is about as good as all the other (unflagged) columns together;
* ``missingness``: whether the column is filled predicts the label almost perfectly;
* ``after_scoring_time``: a date column mostly lies after the table's time column.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.model_selection import StratifiedKFold, train_test_split

from leadscore.core.exceptions import ConfigError, LeakageError, TargetError
from leadscore.data.schema import ColumnSpec, TableSchema, match_columns, prepare_features
from leadscore.data.tables import clean_placeholders
from leadscore.modeling.candidates import make_model

CHECKS = ("declared", "single_feature_auc", "dominates_others", "missingness", "after_scoring_time")
TARGET_SMOOTHING = 20.0   # pseudo-rows pulling a category's target mean toward the global rate
ENCODING_FOLDS = 5
DOMINANCE_FOLDS = 3
DOMINANCE_PARAMS = {"n_estimators": 100}
DOMINANCE_MAX_ROWS = 20_000   # the model of all other columns is fitted once per candidate: keep it quick
# One thread: on a 2-core machine with any other busy process, 2 OpenMP threads run 10-100x slower.
DOMINANCE_THREADS = 1
_MISSING_LEVEL = "\x00(missing)"


@dataclass(frozen=True)
class LeakFinding:
    """One check that one raw column tripped."""

    column: str
    check: str
    value: float
    message: str


@dataclass(frozen=True)
class LeakageSettings:
    """Thresholds of the leakage checks (AUCs are symmetric: ``|AUC - 0.5| + 0.5``)."""

    single_feature_auc: float = 0.90
    dominance_margin: float = 0.02
    dominance_min_auc: float = 0.75
    missingness_auc: float = 0.90
    after_time_share: float = 0.5
    max_rows: int = 50_000
    seed: int = 42

    def __post_init__(self) -> None:
        for name in ("single_feature_auc", "dominance_min_auc", "missingness_auc"):
            value = getattr(self, name)
            if not 0.5 <= value <= 1.0:
                raise ConfigError(f"leakage.{name}: expected an AUC between 0.5 and 1, got {value!r}")
        if not 0.0 <= self.after_time_share <= 1.0:
            raise ConfigError(f"leakage.after_time_share: expected a share between 0 and 1, "
                              f"got {self.after_time_share!r}")
        if self.dominance_margin < 0:
            raise ConfigError(f"leakage.dominance_margin: expected >= 0, got {self.dominance_margin!r}")
        if self.max_rows < 100:
            raise ConfigError(f"leakage.max_rows: expected at least 100, got {self.max_rows!r}")


DEFAULT_SETTINGS = LeakageSettings()


def _fmt(value: float, threshold: float) -> str:
    """Two decimals, or three where two would make the value look equal to its threshold."""
    return f"{value:.2f}" if f"{value:.2f}" != f"{threshold:.2f}" else f"{value:.3f}"


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC-AUC from average ranks (Mann-Whitney U), several times faster than ``roc_auc_score``."""
    ranks = rankdata(score)
    positives = int(y.sum())
    negatives = len(y) - positives
    return float((ranks[y == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def _symmetric_auc(y: np.ndarray, score: np.ndarray) -> float:
    auc = _auc(y, score)
    return max(auc, 1.0 - auc)


def _labels(y: pd.Series, n_rows: int) -> np.ndarray:
    if len(y) != n_rows:
        raise TargetError(f"expected one label per row ({n_rows}), got {len(y)}")
    if pd.isna(y).any():
        raise TargetError(f"expected 0/1 labels, got {int(pd.isna(y).sum())} missing label(s)")
    labels = np.asarray(y, dtype="float64")
    if not np.isin(labels, (0.0, 1.0)).all():
        raise TargetError(f"expected 0/1 labels, got values {sorted(set(labels.tolist()) - {0.0, 1.0})[:5]}")
    if np.unique(labels).size < 2:
        raise TargetError("expected both classes in the labels, got only one")
    return labels.astype(int)


def _subsample(y: np.ndarray, max_rows: int, seed: int) -> np.ndarray:
    """Sorted positions of at most ``max_rows`` rows, stratified by ``y``."""
    positions = np.arange(len(y))
    if len(y) <= max_rows:
        return positions
    keep, _ = train_test_split(positions, train_size=max_rows, stratify=y, random_state=seed)
    return np.sort(keep)


def _target_encoded_auc(values: pd.Series, y: np.ndarray, seed: int) -> float:
    """AUC of out-of-fold, smoothed target-mean encoding (an id-like column cannot memorise)."""
    levels = values.fillna(_MISSING_LEVEL).astype(str).to_numpy()
    encoded = np.empty(len(y), dtype="float64")
    folds = StratifiedKFold(ENCODING_FOLDS, shuffle=True, random_state=seed)
    for train, valid in folds.split(levels, y):
        prior = y[train].mean()
        stats = pd.DataFrame({"level": levels[train], "y": y[train]}).groupby("level")["y"].agg(
            ["sum", "count"])
        rate = (stats["sum"] + TARGET_SMOOTHING * prior) / (stats["count"] + TARGET_SMOOTHING)
        encoded[valid] = pd.Series(levels[valid]).map(rate).fillna(prior).to_numpy(dtype="float64")
    # Below 0.5 is an artefact of out-of-fold encoding (small levels), not a reversed signal.
    return max(_auc(y, encoded), 0.5)


def _single_auc(spec: ColumnSpec, X: pd.DataFrame, y: np.ndarray, seed: int) -> float:
    if spec.kind == "categorical":
        return _target_encoded_auc(X[spec.name], y, seed)
    best = 0.5
    for name in spec.feature_names():
        values = X[name].astype("float64")
        if values.notna().any():
            best = max(best, _symmetric_auc(y, values.fillna(values.median()).to_numpy()))
    return best


def _others_auc(schema: TableSchema, others: list[ColumnSpec], X: pd.DataFrame, y: np.ndarray,
                seed: int) -> float:
    """Out-of-fold ROC-AUC of a small LightGBM on the ``others`` columns."""
    reduced = dataclasses.replace(schema, columns=tuple(others))
    features = X[reduced.feature_names]
    oof = np.empty(len(y), dtype="float64")
    for train, valid in StratifiedKFold(DOMINANCE_FOLDS, shuffle=True, random_state=seed).split(features, y):
        model = make_model("lightgbm", reduced, dict(DOMINANCE_PARAMS), seed)
        model.set_params(model__n_jobs=DOMINANCE_THREADS)
        model.fit(features.iloc[train], y[train])
        oof[valid] = model.predict_proba(features.iloc[valid])[:, 1]
    return _auc(y, oof)


def _missing_auc(raw: pd.Series, placeholders: Sequence[str], y: np.ndarray) -> float | None:
    """AUC of "the cleaned value is missing"; None when it is never or always missing."""
    distinct = pd.Series(raw.dropna().unique(), dtype=raw.dtype)  # clean each distinct value once
    blanks = distinct[clean_placeholders(distinct, placeholders).isna().to_numpy()]
    missing = (raw.isna() | raw.isin(blanks)).to_numpy(dtype="float64")
    if missing.min() == missing.max():
        return None
    return _symmetric_auc(y, missing)


def _later_share(values: pd.Series, times: pd.Series) -> float | None:
    stamps = pd.to_datetime(values, errors="coerce", format="mixed", utc=True)
    both = stamps.notna() & times.notna()
    if not both.any():
        return None
    return float((stamps[both] > times[both]).mean())


def _declared(frame: pd.DataFrame, declared: Iterable[str], protected: set[str]) -> list[LeakFinding]:
    names = [d for d in dict.fromkeys(declared) if d in frame.columns and d not in protected]
    return [LeakFinding(d, "declared", float("nan"), "declared as not known at scoring time") for d in names]


def _column_checks(spec: ColumnSpec, frame: pd.DataFrame, X: pd.DataFrame, y: np.ndarray,
                   schema: TableSchema, times: pd.Series | None,
                   settings: LeakageSettings) -> tuple[float, list[LeakFinding]]:
    """The single-column AUC and the findings of every check that needs only this column."""
    found: list[LeakFinding] = []
    auc, limit = _single_auc(spec, X, y, settings.seed), settings.single_feature_auc
    if auc > limit:
        found.append(LeakFinding(spec.name, "single_feature_auc", auc,
                                 f"alone predicts the target with ROC-AUC {_fmt(auc, limit)} "
                                 f"(threshold {limit:.2f})"))
    miss, limit = _missing_auc(frame[spec.name], schema.placeholders, y), settings.missingness_auc
    if miss is not None and miss > limit:
        found.append(LeakFinding(spec.name, "missingness", miss,
                                 f"whether it is filled predicts the target with ROC-AUC {_fmt(miss, limit)} "
                                 f"(threshold {limit:.2f})"))
    if times is not None and spec.kind == "datetime":
        share = _later_share(frame[spec.name], times)
        if share is not None and share > settings.after_time_share:
            found.append(LeakFinding(spec.name, "after_scoring_time", share,
                                     f"is later than {schema.time_column} in {share:.0%} of rows "
                                     f"(threshold {settings.after_time_share:.0%})"))
    return auc, found


def _dominance(schema: TableSchema, specs: list[ColumnSpec], single: dict[str, float],
               findings: list[LeakFinding], X: pd.DataFrame, y: np.ndarray,
               settings: LeakageSettings) -> list[LeakFinding]:
    """Columns about as predictive alone as all the other, not already flagged, columns together.

    A candidate is skipped without fitting when another honest column alone already beats it by more
    than the margin: all the others together cannot do worse than their best column.
    """
    flagged = {f.column for f in findings}
    honest = [s for s in schema.columns if s.name not in flagged]
    candidates = [s for s in specs if s.name not in flagged and single[s.name] >= settings.dominance_min_auc]
    if not candidates:
        return []
    keep = _subsample(y, DOMINANCE_MAX_ROWS, settings.seed)
    X, y = X.iloc[keep], y[keep]
    found: list[LeakFinding] = []
    for spec in candidates:
        auc = single[spec.name]
        others = [s for s in honest if s.name != spec.name]
        best_other = max((single.get(s.name, 0.5) for s in others), default=0.5)
        if not others or best_other > auc + settings.dominance_margin:
            continue
        rest = _others_auc(schema, others, X, y, settings.seed)
        if auc >= rest - settings.dominance_margin:
            found.append(LeakFinding(spec.name, "dominates_others", auc,
                                     f"alone reaches ROC-AUC {auc:.2f}, about as much as all other columns "
                                     f"together ({rest:.2f})"))
    return found


def find_leaks(frame: pd.DataFrame, y: pd.Series, schema: TableSchema, *, declared: Iterable[str] = (),
               settings: LeakageSettings = DEFAULT_SETTINGS) -> list[LeakFinding]:
    """Flag columns of a raw training table that look unknown at scoring time.

    Parameters
    ----------
    frame : the raw training table, rows aligned with ``y``; may hold columns outside ``schema``.
    y : 0/1 labels.
    schema : how raw columns become features; its target, id and time columns are never flagged.
    declared : columns the user knows are filled after the outcome (flagged if present in ``frame``).
    settings : thresholds; tables longer than ``settings.max_rows`` are subsampled (stratified, seeded).

    Returns
    -------
    list of LeakFinding
        In column order of ``frame``, then check order of :data:`CHECKS`; empty when nothing looks leaky.
    """
    labels = _labels(y, len(frame))
    protected = {c for c in (schema.target, schema.id_column, schema.time_column) if c}
    findings = _declared(frame, declared, protected)   # names as the user wrote them
    keep = _subsample(labels, settings.max_rows, settings.seed)
    frame, labels = match_columns(frame.iloc[keep], schema), labels[keep]
    specs = [s for s in schema.columns if s.name in frame.columns and s.name not in protected]
    X = prepare_features(frame, schema, allow_missing=True)
    times = None
    if schema.time_column and schema.time_column in frame.columns:
        times = pd.to_datetime(frame[schema.time_column], errors="coerce", format="mixed", utc=True)
    single: dict[str, float] = {}
    for spec in specs:
        single[spec.name], found = _column_checks(spec, frame, X, labels, schema, times, settings)
        findings.extend(found)
    findings.extend(_dominance(schema, specs, single, findings, X, labels, settings))
    order = {name: i for i, name in enumerate(frame.columns)}
    return sorted(findings, key=lambda f: (order.get(f.column, len(order)), CHECKS.index(f.check)))


def check_leakage(findings: Sequence[LeakFinding], allow: Iterable[str] = ()) -> None:
    """Raise :class:`LeakageError` naming every leaky column not in ``allow``, on one line."""
    allowed = set(allow)
    reasons: dict[str, list[str]] = {}
    for finding in findings:
        if finding.column not in allowed:
            reasons.setdefault(finding.column, []).append(finding.message)
    if not reasons:
        return
    listed = "; ".join(f"{column} ({', '.join(messages)})" for column, messages in reasons.items())
    raise LeakageError(
        f"possible leakage, training stopped: {listed}. Drop these columns, or allow them with "
        "--allow-leaky COL / leakage.allow in params.yaml if they are known at scoring time"
    )


def leakage_report(findings: Sequence[LeakFinding]) -> pd.DataFrame:
    """The findings as a table (columns ``column``, ``check``, ``value``, ``message``) for notebooks."""
    rows = [dataclasses.asdict(f) for f in findings]
    return pd.DataFrame(rows, columns=["column", "check", "value", "message"])
