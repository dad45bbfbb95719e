"""Database values (as drivers return them) turned into leadscore's canonical column dtypes.

Drivers differ: PostgreSQL returns aware datetimes for ``TIMESTAMPTZ``, SQLite returns text,
``NUMERIC`` comes back as ``Decimal``. These helpers give what the Parquet extract gives: ``str``
text (missing = NaN), ``float64`` numbers, ``datetime64[ms]`` naive UTC times.

Time-zone rule: an aware value is converted to UTC; a naive value is taken to be in ``tz`` (UTC unless
the mapping says otherwise) and converted to UTC.

>>> import datetime as dt
>>> noon_cest = dt.datetime(2024, 1, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
>>> times([noon_cest, None], "UTC", "t").tolist()
[datetime.datetime(2024, 1, 1, 10, 0), None]
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from leadscore.core.exceptions import DataValidationError

TRUE_TEXTS = ("1", "true", "t", "yes", "y")
SQLITE_FORMAT = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy stores DateTime in SQLite (sorts as text)
_NAIVE_ISO = re.compile(r"^\d{4}-\d\d-\d\d(?:[ T]\d\d:\d\d(?::\d\d(?:\.\d{1,9})?)?)?$")
STR = pd.StringDtype("pyarrow", na_value=np.nan)  # what pandas reads Parquet text as


def texts(values: Sequence[Any]) -> pd.api.extensions.ExtensionArray:
    """Text column (``str`` dtype, missing as NaN); numbers become their text."""
    try:
        return pd.arrays.ArrowStringArray(pa.array(values, type=pa.large_string()), dtype=STR)  # type: ignore[call-arg]
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pd.Series(list(values), dtype=object).astype(STR).array


def numbers(values: Sequence[Any], where: str) -> np.ndarray:
    """``float64`` column (``Decimal``, ints, numeric text; missing as NaN)."""
    try:
        return np.array([np.nan if v is None else v for v in values], dtype="float64")
    except (TypeError, ValueError):
        parsed = pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce")
        bad = parsed.isna() & pd.Series([v is not None for v in values])
        if bad.any():
            raise DataValidationError(f"{where}: expected numbers, got {values[int(np.argmax(bad))]!r}") \
                from None
        return parsed.to_numpy("float64")


def flags(values: Sequence[Any]) -> np.ndarray:
    """``int8`` 0/1 from booleans, numbers or text such as ``true``/``yes``/``1``; missing is 0."""
    out = np.zeros(len(values), dtype="int8")
    for i, v in enumerate(values):
        if isinstance(v, str):
            out[i] = v.strip().lower() in TRUE_TEXTS
        elif v is not None:
            out[i] = bool(v)
    return out


def _local_to_utc(stamps: pd.Series, tz: str) -> pd.Series:
    local = stamps.dt.tz_localize(tz, ambiguous=np.zeros(len(stamps), dtype=bool),
                                  nonexistent="shift_forward")
    return local.dt.tz_convert("UTC").dt.tz_localize(None)


def times(values: Sequence[Any], tz: str, where: str) -> np.ndarray:
    """``datetime64[ms]`` naive UTC from datetimes (aware or naive), dates or ISO text."""
    if all(v is None or (isinstance(v, dt.datetime) and v.tzinfo is None) for v in values):
        naive = pa.array(values, type=pa.timestamp("ms")).to_numpy(zero_copy_only=False) if len(values) \
            else np.array([], dtype="datetime64[ms]")
        if tz == "UTC" or not len(naive):
            return naive
        return _local_to_utc(pd.Series(naive), tz).to_numpy("datetime64[ms]")
    if all(v is None or isinstance(v, dt.datetime) for v in values):
        aware = [v.astimezone(dt.UTC).replace(tzinfo=None) if v is not None and v.tzinfo else v
                 for v in values]
        naive_at = [i for i, v in enumerate(values) if v is not None and v.tzinfo is None]
        out = np.array(aware, dtype="datetime64[ms]")
        if naive_at and tz != "UTC":
            out[naive_at] = _local_to_utc(pd.Series(out[naive_at]), tz).to_numpy("datetime64[ms]")
        return out
    return _parse_times(values, tz, where)


def _parse_times(values: Sequence[Any], tz: str, where: str) -> np.ndarray:
    if all(v is None or (isinstance(v, str) and _NAIVE_ISO.match(v)) for v in values):
        naive = np.array(list(values), dtype="datetime64[ms]")  # SQLite text, as SQLAlchemy writes it
        return naive if tz == "UTC" else _local_to_utc(pd.Series(naive), tz).to_numpy("datetime64[ms]")
    raw = pd.Series([v.isoformat() if isinstance(v, dt.date) else v for v in values], dtype=object)
    try:
        parsed = pd.to_datetime(raw, format="ISO8601")
        if getattr(parsed.dt, "tz", None) is None:
            parsed = _local_to_utc(parsed, tz) if tz != "UTC" else parsed
        else:
            parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    except (ValueError, TypeError):  # mixed offsets, or text that is no time
        try:
            parsed = pd.to_datetime(raw, format="ISO8601", utc=True).dt.tz_localize(None)
        except (ValueError, TypeError) as exc:
            first = next((v for v in values if v is not None), None)
            raise DataValidationError(f"{where}: expected timestamps, got e.g. {first!r}") from exc
    return parsed.to_numpy("datetime64[ms]")


def bind_time(value: Any, *, aware: bool, tz: str, sqlite: bool) -> Any:
    """A time as a query parameter for a column of that kind (``value`` naive UTC or aware)."""
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    if aware:
        return stamp.to_pydatetime()
    local = stamp.tz_convert(tz).tz_localize(None).to_pydatetime()
    return local.strftime(SQLITE_FORMAT) if sqlite else local
