"""Column kinds of a lead table and the one function that turns raw rows into model input.

:func:`infer_schema` looks at a training table once; :func:`prepare_features` applies the result to any
table (training, a batch, a single lead), so training and scoring share one code path.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from leadscore.core.config import DEFAULT_PLACEHOLDERS
from leadscore.core.exceptions import DataValidationError
from leadscore.data.tables import (
    clean_placeholders,
    clean_text,
    map_values,
    parse_numbers,
    parse_numeric,
    placeholder_tokens,
)

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


def datetime_parts(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Month, day of week and hour (float64, NaN when missing or unparseable) of a 1-D array.

    A NumPy datetime64 array is read as is (wall time); anything else is parsed as text, in UTC.
    """
    if values.dtype.kind == "M":
        stamps = pd.DatetimeIndex(values)
    else:
        stamps = pd.DatetimeIndex(pd.to_datetime(values, errors="coerce", format="mixed", utc=True))
    return (stamps.month.to_numpy(dtype="float64", na_value=np.nan),
            stamps.day_of_week.to_numpy(dtype="float64", na_value=np.nan),
            stamps.hour.to_numpy(dtype="float64", na_value=np.nan))


def _domain_flag(value: Any) -> float:
    if not (isinstance(value, str) and "@" in value):
        return np.nan
    return 1.0 if value.rsplit("@", 1)[-1].strip().casefold() in FREE_EMAIL_DOMAINS else 0.0


def email_free(values: np.ndarray) -> np.ndarray:
    """1.0 for an address at a free e-mail provider, 0.0 for another domain, NaN when there is none."""
    return map_values(values, _domain_flag).astype("float64")


def _fold(value: Any) -> Any:
    return np.nan if pd.isna(value) else " ".join(str(value).split()).casefold()


def normalize_categories(values: np.ndarray) -> np.ndarray:
    """Array form of :func:`normalize_category`: an object array of folded strings, NaN when missing."""
    return map_values(values, _fold)


def normalize_category(values: pd.Series) -> pd.Series:
    """Categories compared case- and whitespace-insensitively: "Health " and "health" are one."""
    folded = normalize_categories(values.to_numpy(dtype=object))
    return pd.Series(folded, index=values.index, dtype="object", name=values.name)


def _header_key(name: object) -> str:
    return " ".join(str(name).replace("_", " ").split()).casefold()


def _renames(names: list[Any], schema: TableSchema) -> dict[Any, str]:
    present = set(names)
    known = {c.name for c in schema.columns}
    wanted = {_header_key(c.name): c.name for c in schema.columns if c.name not in present}
    if not wanted:
        return {}
    renames = {col: wanted[_header_key(col)] for col in names
               if _header_key(col) in wanted and col not in known}
    if renames:
        log.info("matched columns by name: %s", renames)
    return renames


def match_columns(frame: pd.DataFrame, schema: TableSchema) -> pd.DataFrame:
    """Rename columns that differ from the schema only in case, spaces or underscores."""
    renames = _renames(list(frame.columns), schema)
    return frame.rename(columns=renames) if renames else frame


def _warn_unparsed(name: str, values: np.ndarray, numbers: np.ndarray) -> None:
    bad = ~pd.isna(values) & np.isnan(numbers)
    if bad.any():
        log.warning("column %r: %d value(s) are not numbers (e.g. %r); scored as missing",
                    name, int(bad.sum()), values[np.flatnonzero(bad)[0]])


def _absent(names: list[Any] | Mapping[Any, Any], schema: TableSchema, allow_missing: bool) -> list[str]:
    present = names if isinstance(names, Mapping) else set(names)
    absent = [c.name for c in schema.columns if c.name not in present]
    required = [c for c in absent if c in schema.required_columns]
    if required and not allow_missing:
        raise DataValidationError(
            f"missing required column(s): {', '.join(required)} "
            "(always filled in training; pass --allow-missing to score them as unknown)"
        )
    return absent


def check_columns(frame: pd.DataFrame, schema: TableSchema, *, allow_missing: bool = False) -> list[str]:
    """Return the optional columns absent from ``frame``; raise if a required one is absent."""
    return _absent(list(frame.columns), schema, allow_missing)


def column_array(series: pd.Series, kind: Kind) -> tuple[np.ndarray, bool]:
    """``(values, is_text)``: a raw column as the 1-D array :func:`spec_features` takes.

    Text (object, string or categorical-of-text dtypes) becomes an object array; NumPy numbers and
    booleans stay as they are; a datetime column read as a ``datetime`` kind keeps its wall time; any
    other column becomes an object array (for ``numeric``: nullable numbers become float64).
    """
    if pd.api.types.is_object_dtype(series) or pd.api.types.is_string_dtype(series):
        return series.to_numpy(dtype=object), True
    dtype = series.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "biuf":
        return series.to_numpy(), False
    if kind == "datetime" and pd.api.types.is_datetime64_any_dtype(series):
        stamps = series.dt.tz_localize(None) if getattr(dtype, "tz", None) is not None else series
        return stamps.to_numpy(), False
    if kind == "numeric" and (pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series)):
        return series.to_numpy(dtype="float64", na_value=np.nan), False
    return series.astype("object").to_numpy(), False


def _lead_array(value: Any, kind: Kind) -> tuple[np.ndarray, bool]:
    """:func:`column_array` of the one-value column ``pd.Series([value])``, quick for plain values."""
    if isinstance(value, str) or value is None:
        return np.array([value], dtype=object), True
    if isinstance(value, bool | np.bool_ | float | np.floating) or (
            isinstance(value, int | np.integer) and -2**63 <= value < 2**63):
        return np.asarray([value]), False
    return column_array(pd.Series([value]), kind)


def spec_features(spec: ColumnSpec, values: np.ndarray, is_text: bool,
                  tokens: frozenset[str]) -> dict[str, np.ndarray]:
    """The model-input columns (:meth:`ColumnSpec.feature_names`) of one raw column, for any length.

    Parameters
    ----------
    spec : how the column becomes features.
    values : the raw column (see :func:`column_array`).
    is_text : placeholders are cleaned from text columns only.
    tokens : the schema's placeholders (:func:`leadscore.data.tables.placeholder_tokens`).
    """
    if is_text:
        values = clean_text(values, tokens)
    if spec.kind == "numeric":
        numbers = parse_numbers(values)
        _warn_unparsed(spec.name, values, numbers)
        return {spec.name: numbers}
    if spec.kind == "categorical":
        return {spec.name: normalize_categories(values)}
    if spec.kind == "datetime":
        return dict(zip(spec.feature_names(), datetime_parts(values), strict=True))
    if spec.kind == "email":
        return {f"{spec.name}__free_domain": email_free(values)}
    return {f"{spec.name}__present": (~pd.isna(values)).astype("float64")}


def _features(raw: list[tuple[ColumnSpec, np.ndarray, bool]],
              tokens: frozenset[str]) -> dict[str, np.ndarray]:
    """:func:`spec_features` of every raw column; plain numeric columns are parsed in one call."""
    plain = [i for i, (spec, values, is_text) in enumerate(raw)
             if spec.kind == "numeric" and not is_text and values.dtype.kind in "biuf" and len(values) <= 64]
    parsed: dict[int, np.ndarray] = {}
    if plain:  # parse_numbers works value by value, so one call on all of them is the same as one each
        block = np.concatenate([raw[i][1].astype("float64", copy=False) for i in plain])
        stacked, n = parse_numbers(block), len(raw[plain[0]][1])
        infinite = np.isinf(block)
        for k, i in enumerate(plain):
            parsed[i] = stacked[k * n:(k + 1) * n]
        for k in np.flatnonzero(infinite.reshape(len(plain), n).any(axis=1)).tolist():  # "not a number"
            _warn_unparsed(raw[plain[k]][0].name, raw[plain[k]][1], parsed[plain[k]])
    parts: dict[str, np.ndarray] = {}
    for i, (spec, values, is_text) in enumerate(raw):
        parts.update({spec.name: parsed[i]} if i in parsed else spec_features(spec, values, is_text, tokens))
    return parts


def prepare_columns(frame: pd.DataFrame, schema: TableSchema, *,
                    allow_missing: bool = False) -> dict[str, np.ndarray]:
    """:func:`prepare_features` as 1-D arrays by feature name (same values, no DataFrame built)."""
    frame = match_columns(frame, schema)
    absent = check_columns(frame, schema, allow_missing=allow_missing)
    if absent:
        log.warning("scoring without column(s) %s: treated as missing", ", ".join(absent))
    raw = [(spec, *(column_array(frame[spec.name], spec.kind) if spec.name in frame.columns
                    else (np.full(len(frame), np.nan, dtype=object), True)))
           for spec in schema.columns]
    return _features(raw, placeholder_tokens(schema.placeholders))


def prepare_lead(lead: Mapping[str, Any], schema: TableSchema, *,
                 allow_missing: bool = False) -> dict[str, np.ndarray]:
    """:func:`prepare_columns` of the one-row table ``pd.DataFrame([lead])``, without building it."""
    renames = _renames(list(lead), schema)
    row = {renames.get(k, k): v for k, v in lead.items()} if renames else lead
    absent = _absent(row, schema, allow_missing)
    if absent:
        log.warning("scoring without column(s) %s: treated as missing", ", ".join(absent))
    raw = [(spec, *(_lead_array(row[spec.name], spec.kind) if spec.name in row
                    else (np.array([np.nan], dtype=object), True)))
           for spec in schema.columns]
    return _features(raw, placeholder_tokens(schema.placeholders))


def prepare_features(frame: pd.DataFrame, schema: TableSchema, *,
                     allow_missing: bool = False) -> pd.DataFrame:
    """Turn raw rows into the model-input table (one row per input row, same order and index).

    Absent optional columns are treated as missing values; unseen categories pass through (the model's
    encoders map them to "unknown"). Numeric features are float64, categorical ones object (folded text
    or NaN).
    """
    return features_frame(prepare_columns(frame, schema, allow_missing=allow_missing), schema, frame.index)


def features_frame(columns: Mapping[str, np.ndarray], schema: TableSchema,
                   index: pd.Index | None = None) -> pd.DataFrame:
    """The model-input table of :func:`prepare_features` from its arrays (:func:`prepare_columns`)."""
    index = pd.RangeIndex(len(columns[schema.feature_names[0]])) if index is None else index
    return pd.DataFrame({name: pd.Series(columns[name], index=index, dtype=columns[name].dtype)
                         for name in schema.feature_names}, index=index)
