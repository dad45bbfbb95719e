"""Column kinds of a lead table and the one function that turns raw rows into model input.

:func:`infer_schema` looks at a training table once; :func:`prepare_features` applies the result to any
table (training, a batch, a single lead), so training and scoring share one code path.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from leadscore.config import DEFAULT_PLACEHOLDERS
from leadscore.data import clean_placeholders, parse_numeric
from leadscore.exceptions import DataValidationError

log = logging.getLogger(__name__)

Kind = Literal["numeric", "categorical", "datetime", "email", "presence"]

FREE_EMAIL_DOMAINS = frozenset({
    "gmail.com", "googlemail.com", "yahoo.com", "yahoo.co.uk", "hotmail.com", "outlook.com",
    "live.com", "msn.com", "aol.com", "icloud.com", "me.com", "mac.com", "mail.com", "gmx.com",
    "gmx.de", "gmx.net", "web.de", "proton.me", "protonmail.com", "yandex.com", "yandex.ru",
    "mail.ru", "qq.com", "163.com", "126.com", "zoho.com", "rediffmail.com", "comcast.net",
})
MAX_CATEGORIES_SHARE = 0.9   # a text column with more distinct values than this share is an identifier
MIN_ROWS_FOR_ID_CHECK = 50
_ID_NAME = re.compile(r"(^|[\s_])(id|number|no|nr|key)$", re.IGNORECASE)
TEXT_MEAN_LENGTH = 40        # long distinct strings are free text, not categories


@dataclass(frozen=True)
class ColumnSpec:
    """One raw input column and how it becomes model features."""

    name: str
    kind: Kind
    required: bool = False
    missing_rate: float = 0.0
    description: str = ""

    def feature_names(self) -> list[str]:
        """The model-input columns this raw column produces."""
        if self.kind == "datetime":
            return [f"{self.name}__month", f"{self.name}__dayofweek", f"{self.name}__hour"]
        if self.kind == "email":
            return [f"{self.name}__free_domain"]
        if self.kind == "presence":
            return [f"{self.name}__present"]
        return [self.name]


@dataclass(frozen=True)
class TableSchema:
    """Everything needed to rebuild model input from a raw table at scoring time."""

    columns: tuple[ColumnSpec, ...]
    id_column: str | None = None
    time_column: str | None = None
    target: str | None = None
    placeholders: tuple[str, ...] = DEFAULT_PLACEHOLDERS
    dropped: dict[str, str] = field(default_factory=dict)

    @property
    def categorical_features(self) -> list[str]:
        return [c.name for c in self.columns if c.kind == "categorical"]

    @property
    def numeric_features(self) -> list[str]:
        return [f for c in self.columns if c.kind != "categorical" for f in c.feature_names()]

    @property
    def feature_names(self) -> list[str]:
        return [f for c in self.columns for f in c.feature_names()]

    def describe_columns(self) -> list[dict[str, object]]:
        """Name, kind, required and training missing rate of every input column (for metadata)."""
        return [{"name": c.name, "kind": c.kind, "required": c.required, "missing_rate": c.missing_rate}
                for c in self.columns]

    @property
    def required_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.required]


def _looks_datetime(values: pd.Series) -> bool:
    sample = values.dropna().astype(str).head(500)
    if sample.empty or not sample.str.contains(r"\d", regex=True).all():
        return False
    if (sample.str.len() < 6).any():
        return False
    parsed = pd.to_datetime(sample, errors="coerce", format="mixed")
    return bool(parsed.notna().mean() >= 0.95)


def _looks_email(values: pd.Series) -> bool:
    sample = values.dropna().astype(str).head(500)
    return bool(len(sample) and sample.str.contains(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", regex=True).mean() >= 0.9)


def _infer_kind(values: pd.Series) -> tuple[Kind | None, str]:
    """The kind of one cleaned column, or None with the reason it cannot be a feature."""
    present = values.dropna()
    if present.empty:
        return None, "always missing"
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        kind: Kind = "numeric"
    elif pd.api.types.is_datetime64_any_dtype(values):
        kind = "datetime"
    elif parse_numeric(present).notna().mean() >= 0.98:
        kind = "numeric"
    elif _looks_datetime(present):
        kind = "datetime"
    elif _looks_email(present):
        kind = "email"
    else:
        kind = "categorical"
    if kind in ("numeric", "categorical") and present.nunique() <= 1:
        return None, "constant"
    if kind == "categorical" and len(present) >= MIN_ROWS_FOR_ID_CHECK:
        distinct = present.astype(str).str.casefold().nunique() / len(present)
        if distinct > MAX_CATEGORIES_SHARE:
            long_text = present.astype(str).str.len().mean() > TEXT_MEAN_LENGTH
            return "presence", "free text" if long_text else "identifier-like (nearly all values distinct)"
    if kind == "numeric" and len(present) >= MIN_ROWS_FOR_ID_CHECK:
        numbers = parse_numeric(present)
        if numbers.is_unique and (numbers == numbers.round()).all() and (
                numbers.is_monotonic_increasing or numbers.is_monotonic_decreasing
                or _ID_NAME.search(str(values.name))):
            return None, "row counter or identifier (unique integers)"
    return kind, ""


def infer_schema(
    frame: pd.DataFrame,
    *,
    target: str | None = None,
    id_column: str | None = None,
    time_column: str | None = None,
    drop: Iterable[str] = (),
    placeholders: Iterable[str] = DEFAULT_PLACEHOLDERS,
) -> TableSchema:
    """Decide how each column of a training table becomes features.

    Numbers written as text become numeric, dates expand to month/day-of-week/hour, e-mail addresses
    become a free-domain flag, and identifier-like or free-text columns only say whether they are filled.
    Columns complete in training are required at scoring time; the others may be absent.
    """
    placeholders = tuple(placeholders)
    skip = {c for c in (target, id_column) if c} | set(drop)
    columns: list[ColumnSpec] = []
    dropped: dict[str, str] = {c: "dropped by request" for c in drop if c in frame.columns}
    for name in frame.columns:
        if name in skip:
            continue
        values = clean_placeholders(frame[name], placeholders)
        kind, reason = _infer_kind(values)
        missing = float(values.isna().mean())
        if kind is None:
            dropped[name] = reason
            continue
        if kind == "presence":
            if not 0.0 < missing < 1.0:
                dropped[name] = reason
                continue
            dropped[name] = f"{reason}: only whether it is filled is used"
        columns.append(ColumnSpec(name, kind, required=missing == 0.0 and kind != "presence",
                                  missing_rate=round(missing, 6)))
    if not columns:
        raise DataValidationError("no usable feature columns: every column is empty, constant or an id")
    for name, reason in dropped.items():
        log.info("column %r: %s", name, reason)
    return TableSchema(tuple(columns), id_column=id_column, time_column=time_column,
                       target=target, placeholders=placeholders, dropped=dropped)


def _datetime_parts(values: pd.Series) -> pd.DataFrame:
    stamps = pd.to_datetime(values, errors="coerce", format="mixed", utc=True) \
        if not pd.api.types.is_datetime64_any_dtype(values) else values
    return pd.DataFrame({
        "month": stamps.dt.month.astype("float64"),
        "dayofweek": stamps.dt.day_of_week.astype("float64"),
        "hour": stamps.dt.hour.astype("float64"),
    }, index=values.index)


def _email_free(values: pd.Series) -> pd.Series:
    domain = values.astype("object").map(
        lambda v: v.rsplit("@", 1)[-1].strip().casefold() if isinstance(v, str) and "@" in v else None
    )
    flag = domain.isin(FREE_EMAIL_DOMAINS).astype("float64")
    return flag.where(domain.notna(), np.nan)


def normalize_category(values: pd.Series) -> pd.Series:
    """Categories compared case- and whitespace-insensitively: "Health " and "health" are one."""
    text = values.astype("object")
    folded = [" ".join(str(v).split()).casefold() if not pd.isna(v) else np.nan for v in text]
    return pd.Series(folded, index=values.index, dtype="object", name=values.name)


def _header_key(name: object) -> str:
    return " ".join(str(name).replace("_", " ").split()).casefold()


def match_columns(frame: pd.DataFrame, schema: TableSchema) -> pd.DataFrame:
    """Rename columns that differ from the schema only in case, spaces or underscores."""
    wanted = {_header_key(c.name): c.name for c in schema.columns if c.name not in frame.columns}
    renames = {col: wanted[_header_key(col)] for col in frame.columns
               if _header_key(col) in wanted and col not in {c.name for c in schema.columns}}
    if renames:
        log.info("matched columns by name: %s", renames)
    return frame.rename(columns=renames) if renames else frame


def _warn_unparsed(name: str, values: pd.Series, numbers: pd.Series) -> None:
    bad = values.notna() & numbers.isna()
    if bad.any():
        log.warning("column %r: %d value(s) are not numbers (e.g. %r); scored as missing",
                    name, int(bad.sum()), values[bad].iloc[0])


def check_columns(frame: pd.DataFrame, schema: TableSchema, *, allow_missing: bool = False) -> list[str]:
    """Return the optional columns absent from ``frame``; raise if a required one is absent."""
    absent = [c.name for c in schema.columns if c.name not in frame.columns]
    required = [c for c in absent if c in schema.required_columns]
    if required and not allow_missing:
        raise DataValidationError(
            f"missing required column(s): {', '.join(required)} "
            "(always filled in training; pass --allow-missing to score them as unknown)"
        )
    return absent


def prepare_features(frame: pd.DataFrame, schema: TableSchema, *,
                     allow_missing: bool = False) -> pd.DataFrame:
    """Turn raw rows into the model-input table (one row per input row, same order and index).

    Absent optional columns are treated as missing values; unseen categories pass through (the model's
    encoders map them to "unknown").
    """
    frame = match_columns(frame, schema)
    absent = check_columns(frame, schema, allow_missing=allow_missing)
    if absent:
        log.warning("scoring without column(s) %s: treated as missing", ", ".join(absent))
    parts: dict[str, pd.Series] = {}
    for spec in schema.columns:
        raw = frame[spec.name] if spec.name in frame.columns else pd.Series(
            np.nan, index=frame.index, dtype="object")
        values = clean_placeholders(raw, schema.placeholders)
        if spec.kind == "numeric":
            parts[spec.name] = parse_numeric(values)
            _warn_unparsed(spec.name, values, parts[spec.name])
        elif spec.kind == "categorical":
            parts[spec.name] = normalize_category(values)
        elif spec.kind == "datetime":
            for part, column in _datetime_parts(values).items():
                parts[f"{spec.name}__{part}"] = column
        elif spec.kind == "email":
            parts[f"{spec.name}__free_domain"] = _email_free(values)
        else:
            parts[f"{spec.name}__present"] = values.notna().astype("float64")
    return pd.DataFrame(parts, index=frame.index)[schema.feature_names]
