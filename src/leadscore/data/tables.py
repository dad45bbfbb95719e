"""Read flat lead tables and clean them: file formats, placeholders, numbers, the target.

Real CRM exports are messy: semicolon or tab separators, a BOM, Latin-1 text, ``$1,200`` budgets,
``"Select"`` and ``"N/A"`` in picklists, ``Yes``/``no`` outcomes. Everything here turns such input into
clean pandas columns or a one-line :class:`~leadscore.core.exceptions.LeadscoreError`.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leadscore.core.exceptions import ConfigError, DataValidationError, InputFileError, TargetError
from leadscore.core.files import atomic_write

log = logging.getLogger(__name__)

CSV_SUFFIXES = (".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz", ".csv.zip")
PARQUET_SUFFIXES = (".parquet", ".pq")
EXCEL_SUFFIXES = (".xlsx",)

POSITIVE_TOKENS = frozenset(
    {"1", "1.0", "yes", "y", "true", "t", "converted", "won", "closed won", "success", "positive"}
)
NEGATIVE_TOKENS = frozenset(
    {"0", "0.0", "no", "n", "false", "f", "not converted", "lost", "closed lost", "failure", "negative"}
)

_CURRENCY = re.compile(r"[$€£¥\s]|(?<=\d)%$")
_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$")
_DECIMAL_COMMA = re.compile(r"^[+-]?\d+,\d+$")
_FACTORIZE_FROM = 256  # map_distinct: below this many values a per-value loop is cheaper than factorizing


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in CSV_SUFFIXES + PARQUET_SUFFIXES + EXCEL_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return path.suffix.lower()


def _sniff_delimiter(sample: str) -> str:
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


COMPRESSED_MAGIC = {b"\x1f\x8b": ("gzip-compressed", ".gz"), b"PK\x03\x04": ("a zip archive", ".zip")}


def _check_not_compressed(path: Path) -> None:
    """A compressed file named like plain text would otherwise fail as 'not UTF-8 text'."""
    if path.name.lower().endswith((".gz", ".zip")):
        return
    with path.open("rb") as handle:
        head = handle.read(4)
    for magic, (what, suffix) in COMPRESSED_MAGIC.items():
        if head.startswith(magic):
            raise InputFileError(f"{path} is {what}, not text: name it {path.name}{suffix} "
                                 "(or decompress it)")


def _read_csv(path: Path) -> pd.DataFrame:
    _check_not_compressed(path)
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            if path.name.lower().endswith((".gz", ".zip")):
                sep = None  # python engine sniffs compressed input itself
            else:
                with path.open(encoding=encoding, newline="") as handle:
                    sep = _sniff_delimiter(handle.read(65536))
            options: dict[str, Any] = {"sep": sep, "dtype": str, "keep_default_na": False, "na_values": [],
                                       "encoding": encoding, "engine": "python" if sep is None else "c"}
            frame = pd.read_csv(path, **options)
            _check_header(path, pd.read_csv(path, header=None, nrows=1, **options))
            return frame
        except UnicodeDecodeError:
            continue
        except pd.errors.EmptyDataError as exc:
            raise InputFileError(f"{path} is empty (no header, no rows)") from exc
        except DataValidationError:
            raise
        except (pd.errors.ParserError, ValueError, OSError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputFileError(f"cannot parse {path} as CSV: {first}") from exc
    raise InputFileError(f"cannot decode {path}: not UTF-8 or Windows-1252 text")


def _check_header(path: Path, first_row: pd.DataFrame) -> None:
    """Refuse repeated column names: pandas would rename the second ``age`` to ``age.1`` and a model
    would silently use one and ignore the other."""
    names = [str(v).strip() for v in first_row.iloc[0].tolist()] if len(first_row) else []
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise DataValidationError(f"{path} has duplicate column names: {', '.join(duplicated)} "
                                  "(each column must have its own name)")


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV/TSV (any common separator or encoding), Parquet file or folder, or XLSX file.

    CSV cells are read as text so that cleaning and type inference see exactly what the file holds.

    Raises
    ------
    InputFileError
        If the file is missing, unreadable, of an unknown format, or has no data rows.
    """
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"file not found: {path}")
    suffix = _suffix(path)
    if path.is_file() and path.stat().st_size == 0:
        raise InputFileError(f"{path} is empty (0 bytes)")
    try:
        if path.is_dir() or suffix in PARQUET_SUFFIXES:
            frame = pd.read_parquet(path)
        elif suffix in CSV_SUFFIXES:
            frame = _read_csv(path)
        elif suffix in EXCEL_SUFFIXES:
            frame = pd.read_excel(path, dtype=str, keep_default_na=False, na_values=[])
            _check_header(path, pd.read_excel(path, header=None, nrows=1, dtype=str))
        else:
            raise InputFileError(
                f"unsupported file type '{suffix or path.name}' for {path}: "
                "expected .csv, .tsv, .txt, .parquet or .xlsx"
            )
    except PermissionError as exc:
        raise InputFileError(f"cannot read {path}: permission denied") from exc
    except (InputFileError, DataValidationError):
        raise
    except (OSError, ValueError, ImportError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputFileError(f"cannot read {path}: {message}") from exc
    if frame.empty:
        raise InputFileError(f"{path} has no data rows")
    frame.columns = [str(c).strip() for c in frame.columns]
    duplicated = sorted({c for c in frame.columns if list(frame.columns).count(c) > 1})
    if duplicated:
        raise DataValidationError(f"{path} has duplicate column names: {', '.join(duplicated)}")
    return frame


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write CSV or Parquet atomically: a crash leaves the old file or none, never half a file."""
    path = Path(path)
    suffix = _suffix(path)
    if suffix not in CSV_SUFFIXES + PARQUET_SUFFIXES:
        raise InputFileError(f"unsupported output type '{suffix}' for {path}: expected .csv or .parquet")
    sep = "\t" if suffix.startswith(".tsv") else ","

    def write(tmp: Path) -> None:
        if suffix in PARQUET_SUFFIXES:
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_csv(tmp, index=False, sep=sep)

    try:
        atomic_write(path, write, suffix=suffix)
    except OSError as exc:
        raise InputFileError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return path


def placeholder_tokens(placeholders: Iterable[str]) -> frozenset[str]:
    """Placeholder values as compared: stripped and case-folded."""
    return frozenset(str(p).strip().casefold() for p in placeholders)


def map_values(values: np.ndarray, func: Callable[[Any], Any]) -> np.ndarray:
    """``func`` applied to every value of a 1-D array, as an object array.

    When every present value is a string, each distinct string is processed once and all missing values
    (None, NaN, NA) are passed to ``func`` as NaN, so ``func`` must treat every missing value alike.
    """
    values = np.asarray(values, dtype=object)
    if len(values) > 1 and pd.api.types.infer_dtype(values, skipna=True) == "string":
        codes, uniques = pd.factorize(values)
        mapped = np.empty(len(uniques) + 1, dtype=object)
        mapped[:-1] = [func(v) for v in uniques]
        mapped[-1] = func(np.nan)
        return mapped.take(codes)
    out = np.empty(len(values), dtype=object)
    out[:] = [func(v) for v in values]
    return out


def clean_text(values: np.ndarray, tokens: frozenset[str]) -> np.ndarray:
    """Array form of :func:`clean_placeholders` for a text column: an object array with strings stripped
    and placeholders (``tokens``, from :func:`placeholder_tokens`) and missing values as NaN."""
    values = np.asarray(values, dtype=object)
    missing = pd.isna(values)

    def clean(v: Any) -> Any:
        if isinstance(v, str):
            stripped = v.strip()
            return np.nan if stripped.casefold() in tokens else stripped
        return v

    out = map_values(values, clean)
    out[missing] = np.nan
    return out


def is_text(series: pd.Series) -> bool:
    """Whether a column holds text (object or string dtype): the columns placeholders are cleaned in."""
    return pd.api.types.is_object_dtype(series) or pd.api.types.is_string_dtype(series)


def map_distinct(series: pd.Series, func: Callable[[Any], Any], *, missing: Any,
                 dtype: Any = object) -> np.ndarray:
    """``func`` of every present value of a column as a ``dtype`` array, ``missing`` where it is missing.

    Each distinct string is processed once (string columns are factorized, without converting a
    PyArrow-backed column to Python objects); short or mixed columns are processed value by value.
    """
    if len(series) >= _FACTORIZE_FROM and (
            isinstance(series.dtype, pd.StringDtype)
            or (series.dtype == object and pd.api.types.infer_dtype(series, skipna=True) == "string")):
        codes, uniques = pd.factorize(series)
        table = np.empty(len(uniques) + 1, dtype=dtype)
        table[:-1] = [func(v) for v in uniques]
        table[-1] = missing
        return table.take(codes)  # code -1 (missing) takes the last entry
    values = series.to_numpy(dtype=object)
    absent = pd.isna(values)
    out = np.empty(len(values), dtype=dtype)
    out[:] = [missing if gone else func(v) for v, gone in zip(values, absent, strict=True)]
    return out


def clean_placeholders(series: pd.Series, placeholders: Iterable[str]) -> pd.Series:
    """Strip text cells and turn placeholder values ("Select", "N/A", "", ...) into missing.

    Comparison is case-insensitive after stripping whitespace; non-text columns pass through.
    """
    if not is_text(series):
        return series
    cleaned = clean_text(series.to_numpy(dtype=object), placeholder_tokens(placeholders))
    return pd.Series(cleaned, index=series.index, name=series.name, dtype="object")


def _number_text(v: Any) -> Any:
    """A text cell with currency signs, spaces, thousands separators or a decimal comma made plain."""
    if not isinstance(v, str):
        return v
    v = _CURRENCY.sub("", v)
    if _THOUSANDS.match(v):
        v = v.replace(",", "")
    return v.replace(",", ".") if _DECIMAL_COMMA.match(v) else v


def parse_numbers(values: np.ndarray) -> np.ndarray:
    """Array form of :func:`parse_numeric`: float64, NaN where a value is missing, unparseable or infinite.

    NumPy booleans and numbers convert directly; an object array is parsed as text.
    """
    values = np.asarray(values)
    if values.dtype.kind in "biuf":
        numbers = values.astype("float64")
    else:
        text = pd.Series(values, dtype=object)
        if len(values) > 1 and pd.api.types.infer_dtype(values, skipna=True) == "string":
            text = pd.Series(map_values(values, _number_text), dtype=object)
        else:  # Series.map infers the result's dtype (e.g. timestamps), which decides how it parses
            text = text.map(_number_text)
        numbers = pd.to_numeric(text, errors="coerce").astype("float64").to_numpy()
    return np.where(np.isinf(numbers), np.nan, numbers)


def parse_numeric(series: pd.Series) -> pd.Series:
    """Parse numbers written as text ("1,200", "$5,000", "12%", "3,5"); unparseable cells become NaN.

    Infinite values become NaN too: they carry no usable magnitude.
    """
    return pd.Series(numeric_values(series), index=series.index, name=series.name, dtype="float64")


def numeric_values(series: pd.Series) -> np.ndarray:
    """Array form of :func:`parse_numeric`: float64, NaN where unparseable, missing or infinite."""
    if pd.api.types.is_bool_dtype(series.dtype) or pd.api.types.is_numeric_dtype(series.dtype):
        return parse_numbers(series.to_numpy(dtype="float64", na_value=np.nan))
    return parse_numbers(series.to_numpy(dtype=object))


def coerce_target(series: pd.Series, name: str | None = None) -> pd.Series:
    """Map a binary outcome column to 0/1 (``Int8``, missing where the outcome is unknown).

    Accepts 0/1, yes/no, true/false, y/n, won/lost, converted/not converted (any case).

    Raises
    ------
    TargetError
        If a value is not one of those, or only one class is present.
    """
    name = name or str(series.name)
    if pd.api.types.is_bool_dtype(series):
        series = series.astype("Int8")
    folded = series.astype("object").map(
        lambda v: str(v).strip().casefold() if v is not None and not pd.isna(v) else None
    )
    folded = folded.where(~folded.isin(["", "nan", "none", "null", "n/a", "na"]), None)
    positive = folded.isin(POSITIVE_TOKENS)
    negative = folded.isin(NEGATIVE_TOKENS)
    unknown = folded.notna() & ~positive & ~negative
    if unknown.any():
        examples = ", ".join(repr(v) for v in pd.unique(series[unknown])[:5])
        raise TargetError(
            f"target column '{name}' is not binary: found {examples}; "
            "expected 0/1, yes/no or true/false"
        )
    target = pd.Series(pd.NA, index=series.index, dtype="Int8", name=series.name)
    target[positive] = 1
    target[negative] = 0
    classes = target.dropna().unique()
    if len(classes) < 2:
        found = "no labelled rows" if len(classes) == 0 else f"only the value {int(classes[0])}"
        raise TargetError(f"target column '{name}' needs both classes (0 and 1), found {found}")
    return target


def utc_timestamp(text: str, option: str) -> pd.Timestamp:
    """A date or time given on the command line as a UTC timestamp (naive values are UTC).

    Raises
    ------
    ConfigError
        Naming ``option`` (e.g. ``--since``) when ``text`` is not a date.
    """
    try:
        stamp = pd.Timestamp(text)
    except ValueError as exc:
        raise ConfigError(f"{option} {text!r}: expected a date such as 2025-06-01") from exc
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp
