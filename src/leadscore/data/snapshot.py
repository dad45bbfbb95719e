"""Point-in-time lead rows from the relational CRM tables (leads, activities, outcomes).

A lead's features are computed *as of* its snapshot time from its own profile and only the activities
strictly before that time. The same functions build training rows, score a batch and score one lead,
so there is no train/serve skew: a lead scored alone gets exactly the features it gets in a batch.

Label: 1 if the lead converts in ``(snapshot_at, snapshot_at + label_window_days]``, 0 if it does not
and that window has closed by the end of the data. Leads whose window is still open, and leads that
converted before their snapshot, have no label (they are scored, never counted as negatives).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from leadscore.core.config import DEFAULT_PLACEHOLDERS
from leadscore.core.exceptions import DataValidationError
from leadscore.data.schema import normalize_categories
from leadscore.data.tables import (
    clean_text,
    is_text,
    map_distinct,
    map_values,
    numeric_values,
    parse_numbers,
    placeholder_tokens,
)

try:  # pandas >= 3: assemble the result from its column blocks, without per-column inference
    from pandas.api.internals import create_dataframe_from_blocks
except ImportError:  # pragma: no cover - pandas 2.x
    create_dataframe_from_blocks = None

LEAD_COLUMNS = ("lead_id", "created_at")
ACTIVITY_COLUMNS = ("lead_id", "timestamp", "activity_type")
PROFILE_CATEGORIES = ("source", "vertical", "company_size", "region", "job_title",
                      "email_domain_type")
CONTACT_FIELDS = ("source", "vertical", "company_size", "region", "job_title", "budget",
                  "email_domain_type", "phone", "company_name")
NOT_PASSED_THROUGH = frozenset({"lead_id", "created_at", "phone", "company_name", "budget"})
META_COLUMNS = ("lead_id", "created_at", "snapshot_at", "label", "status")
FEATURES: tuple[str, ...] = (  # the documented feature list (README), in the order build_snapshot writes it
    # profile
    "source", "vertical", "company_size", "region", "job_title", "email_domain_type", "seniority", "budget",
    "has_phone", "has_company_name", "contact_completeness",
    # timing
    "created_month", "created_dayofweek", "created_hour", "created_on_weekend", "days_since_creation",
    # engagement before the snapshot
    "emails_sent", "emails_opened", "emails_clicked", "page_views", "form_submissions", "quote_requests",
    "calls_inbound", "calls_outbound", "meetings", "email_open_rate", "email_click_rate",
    "email_opens_7d", "page_views_7d", "activities_7d", "email_opens_30d", "page_views_30d",
    "activities_30d", "pricing_page_views", "time_on_site_min", "avg_seconds_per_page", "call_minutes",
    # direction, recency, responsiveness
    "inbound_events", "outbound_events", "inbound_outbound_ratio", "days_since_last_activity",
    "days_since_last_inbound", "first_response_hours", "active_days",
    # call-note keywords
    "note_budget", "note_competitor", "note_timeline", "note_decision_maker", "note_not_interested",
    "note_callback", "note_no_answer",
)

SENIORITY_PATTERNS = (  # first match wins
    ("c_level", r"\b(?:ceo|cfo|coo|cto|cio|chief|president|founder|owner|partner|principal)\b"),
    ("vp", r"\b(?:vp|vice president|svp|evp|head of)\b"),
    ("director", r"\bdirector\b"),
    ("manager", r"\b(?:manager|supervisor|lead)\b"),
    ("student", r"\b(?:student|intern)\b"),
    ("individual", r"\w"),
)
NOTE_KEYWORDS = {
    "budget": r"budget|funding|approved",
    "competitor": r"competitor|comparing|alternative|other vendor|other quote",
    "timeline": r"end of (?:the )?month|this (?:week|month|quarter)|\bq[1-4]\b|urgent|asap|deadline|renewal",
    "decision_maker": r"decision[- ]maker|sign[- ]off|authority",
    "not_interested": r"not interested|no interest|unsubscribe|do not call|wrong (?:number|person)",
    "callback": r"call ?back|follow[- ]up|next week|reschedul",
    "no_answer": r"no answer|voicemail|voice mail|unreachable|no response",
}
DESCRIPTIONS = {
    "days_since_creation": "days between lead creation and the snapshot",
    "contact_completeness": "share of the profile fields that are filled",
    "first_response_hours": "hours from lead creation to the first outbound touch",
    "inbound_outbound_ratio": "inbound events per outbound touch (plus one)",
}


ACTIVITY_KINDS = ("email_sent", "email_open", "email_click", "page_view", "form_submit", "quote_request",
                  "call_inbound", "call_outbound", "meeting")
KIND_COUNTS = {"emails_sent": "email_sent", "emails_opened": "email_open", "emails_clicked": "email_click",
               "page_views": "page_view", "form_submissions": "form_submit",
               "quote_requests": "quote_request", "calls_inbound": "call_inbound",
               "calls_outbound": "call_outbound", "meetings": "meeting"}
INBOUND_KINDS = ("email_open", "email_click", "page_view", "form_submit", "quote_request", "call_inbound")
PRICING_PAGES = ("pricing", "quote")
# Work done once per distinct value (a title, a note, an activity type), not once per row.
_KIND_CODE = {kind: code for code, kind in enumerate(ACTIVITY_KINDS)}
_OTHER_KIND = len(ACTIVITY_KINDS)  # code of any other (or missing) activity type
_SENIORITY = tuple((band, re.compile(pattern)) for band, pattern in SENIORITY_PATTERNS)
_NOTES = tuple(re.compile(pattern) for pattern in NOTE_KEYWORDS.values())
_MS = np.dtype("datetime64[ms]")
_NAT = np.iinfo(np.int64).min  # NaT as int64
_SMALL = 256  # up to this many rows (one lead, its activities) plain Python beats pandas' per-call cost
_DAY, _HOUR = np.timedelta64(1, "D"), np.timedelta64(1, "h")


def _require(frame: pd.DataFrame, columns: Iterable[str], table: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataValidationError(f"{table} table is missing column(s): {', '.join(missing)}")


def _timestamps(values: pd.Series, name: str) -> np.ndarray:
    """Naive UTC ``datetime64[ms]`` values (tz-aware input converted to UTC); missing stays NaT."""
    if values.dtype == _MS:  # already canonical, as the Parquet extract and the database reader give it
        return values.to_numpy()
    stamps = pd.to_datetime(values, errors="coerce")
    if getattr(stamps.dt, "tz", None) is not None:
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    bad = stamps.isna() & values.notna()
    if bad.any():
        raise DataValidationError(f"{name}: {int(bad.sum())} value(s) are not timestamps, "
                                  f"e.g. {values[bad].iloc[0]!r}")
    return stamps.astype("datetime64[ms]").to_numpy()


def snapshot_times(created_at: pd.Series, snapshot_days: float,
                   as_of: pd.Timestamp | None = None) -> pd.Series:
    """``created_at + snapshot_days``, but never later than ``as_of`` (for leads younger than that)."""
    times = created_at + pd.Timedelta(days=snapshot_days)
    if as_of is None:
        return times
    cap = pd.Timestamp(as_of)
    return times.where(times <= cap, cap)


def _snapshot_at(created: np.ndarray, snapshot_days: float, as_of: pd.Timestamp | None) -> np.ndarray:
    """:func:`snapshot_times` on an array; NumPy when ``as_of`` is naive and exact in the result's unit."""
    times = created + pd.Timedelta(days=snapshot_days).to_timedelta64()
    if as_of is None:
        return times
    cap = pd.Timestamp(as_of)
    unit: Any = np.datetime_data(times.dtype)[0]
    if cap.tzinfo is None and not pd.isna(cap) and cap.as_unit(unit) == cap:
        limit = cap.as_unit(unit).to_datetime64()
        return np.where(times <= limit, times, limit)
    return snapshot_times(pd.Series(created), snapshot_days, as_of).to_numpy()


def _band(title: Any) -> Any:
    if not isinstance(title, str):
        return np.nan
    folded = title.casefold()
    return next((band for band, pattern in _SENIORITY if pattern.search(folded)), np.nan)


def seniority(titles: pd.Series) -> pd.Series:
    """Seniority band from a free-text job title ("VP of Sales" -> "vp"); missing stays missing."""
    return pd.Series(map_values(titles.to_numpy(dtype=object), _band), index=titles.index, dtype="object")


def _as_objects(values: np.ndarray | pd.Series) -> np.ndarray:
    return values if isinstance(values, np.ndarray) else values.to_numpy(dtype=object)


def _present(values: np.ndarray | pd.Series) -> np.ndarray:
    return ~np.asarray(pd.isna(values if isinstance(values, np.ndarray) else values.array))


def _calendar(created: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Month, day of week (Monday = 0), hour and weekend flag; NaN (weekend: 0) when missing."""
    missing = np.isnat(created)
    ms = np.where(missing, 0, created.view("i8"))
    days = ms // 86_400_000
    month = (ms.view("datetime64[ms]").astype("datetime64[M]").view("i8") % 12 + 1).astype("float64")
    dayofweek = ((days + 3) % 7).astype("float64")  # 1970-01-01 was a Thursday
    hour = ((ms - days * 86_400_000) // 3_600_000).astype("float64")
    for values in (month, dayofweek, hour):
        values[missing] = np.nan
    return [("created_month", month), ("created_dayofweek", dayofweek), ("created_hour", hour),
            ("created_on_weekend", (dayofweek >= 5).astype("float64"))]


def _profile(leads: pd.DataFrame, created: np.ndarray, snapshot_at: np.ndarray,
             placeholders: Iterable[str], exclude: Iterable[str]) -> list[tuple[Any, Any]]:
    n, tokens, skip = len(leads), placeholder_tokens(placeholders), {*exclude, "lead_id", "created_at"}
    clean = {}  # text columns stripped with placeholders as NaN (object arrays); others as they are
    for name in leads.columns:
        if name not in skip:
            column = leads[name]
            clean[name] = clean_text(column.to_numpy(dtype=object), tokens) if is_text(column) else column
    out: list[tuple[Any, Any]] = [(name, normalize_categories(_as_objects(clean[name])))
                                  for name in PROFILE_CATEGORIES if name in clean]
    nothing = np.full(n, np.nan)
    title = clean.get("job_title")
    out.append(("seniority", nothing if title is None else map_values(_as_objects(title), _band)))
    budget = clean.get("budget")
    budget = nothing if budget is None else \
        parse_numbers(budget) if isinstance(budget, np.ndarray) else numeric_values(budget)
    out.append(("budget", np.where(budget > 0, budget, np.nan)))
    for name in ("phone", "company_name"):
        out.append((f"has_{name}", _present(clean[name]).astype("float64") if name in clean else nothing))
    present = [_present(clean[c]) for c in CONTACT_FIELDS if c in clean]
    out.append(("contact_completeness", sum(present) / len(CONTACT_FIELDS) if present else nothing))
    out += _calendar(created)
    out.append(("days_since_creation", pd.array(snapshot_at - created).total_seconds() / 86400.0))
    known = {name for name, _ in out} | NOT_PASSED_THROUGH
    return out + [(name, values) for name, values in clean.items() if name not in known]


def profile_features(leads: pd.DataFrame, snapshot_at: pd.Series,
                     placeholders: Iterable[str], exclude: Iterable[str]) -> pd.DataFrame:
    """Profile and timing features of each lead; extra lead columns pass through cleaned."""
    created = _timestamps(leads["created_at"], "leads.created_at")
    columns = _profile(leads, created, snapshot_at.to_numpy(), placeholders, exclude)
    return _frame(columns, len(leads)).set_axis(leads.index)


def _count(pos: np.ndarray, mask: np.ndarray, n: int, weights: np.ndarray | None = None) -> np.ndarray:
    return np.bincount(pos[mask], weights=None if weights is None else weights[mask], minlength=n)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _per_event(activities: pd.DataFrame, column: str, func: Callable[[Any], Any], dtype: Any,
               rows: np.ndarray, missing: Any = 0) -> np.ndarray:
    """``func`` of ``column`` at ``rows`` (once per distinct value); ``missing`` where it is missing or
    the column is absent."""
    if column not in activities.columns:
        return np.full(len(rows), missing, dtype=dtype)
    return map_distinct(activities[column], func, missing=missing, dtype=dtype)[rows]


def _kind(value: Any) -> int:
    return _KIND_CODE.get(value, _OTHER_KIND) if isinstance(value, str) else _OTHER_KIND


def _note_flags(note: Any) -> int:
    text = str(note).casefold()
    return sum(1 << bit for bit, pattern in enumerate(_NOTES) if pattern.search(text))


def _latest(pos: np.ndarray, stamps: np.ndarray, n: int, earliest: bool = False) -> np.ndarray:
    """Latest (or earliest) timestamp per lead, NaT for a lead without one."""
    found = np.full(n, np.iinfo(np.int64).max if earliest else _NAT)
    (np.minimum if earliest else np.maximum).at(found, pos, stamps.view("i8"))
    if earliest:
        found[found == np.iinfo(np.int64).max] = _NAT
    return found.view(stamps.dtype)


def _active_days(pos: np.ndarray, stamps: np.ndarray, n: int) -> np.ndarray:
    """Distinct calendar days with an event, per lead."""
    if not len(pos):
        return np.zeros(n)
    day = stamps.astype("datetime64[D]").view("i8")
    day = day - day.min()
    span = int(day.max()) + 1
    if n * span >= 2**62:  # absurd date spans: number the distinct days instead
        day = pd.factorize(day)[0]
        span = int(day.max()) + 1
    pairs = pos * span + day
    distinct = np.unique(pairs) if len(pairs) <= _SMALL else pd.unique(pairs)
    return np.bincount(distinct // span, minlength=n).astype("float64")


def _positions(lead_ids: pd.Series, event_ids: pd.Series) -> np.ndarray:
    """Row of each event's lead in ``lead_ids`` (unique values), -1 for an event of another lead."""
    if len(lead_ids) <= _SMALL and len(event_ids) <= _SMALL:
        keys = lead_ids.to_numpy(dtype=object)
        if all(type(key) is str for key in keys):  # a dict finds exactly what get_indexer finds
            row = {key: i for i, key in enumerate(keys)}
            return np.array([row.get(e, -1) for e in event_ids.to_numpy(dtype=object)], dtype=np.intp)
    index = pd.Index(lead_ids)
    if index.hasnans:  # get_indexer matches a missing event id to the lead whose id is missing
        return index.get_indexer(pd.Index(event_ids))
    codes, uniques = pd.factorize(event_ids)  # look each distinct id up once
    return np.append(index.get_indexer(uniques), -1).take(codes)


def _engagement(activities: pd.DataFrame, stamps: np.ndarray, lead_ids: pd.Series, created: np.ndarray,
                snapshot_at: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Engagement counts, rates, recency and call-note flags from events before each snapshot."""
    n = len(lead_ids)
    pos = _positions(lead_ids, activities["lead_id"])
    keep = pos >= 0
    keep[keep] = stamps[keep] < snapshot_at[pos[keep]]
    rows = np.flatnonzero(keep)
    pos, ts = pos[rows], stamps[rows]
    age = (snapshot_at[pos] - ts) / _DAY
    kind = _per_event(activities, "activity_type", _kind, np.int8, rows, _OTHER_KIND)
    inbound = _per_event(activities, "direction", lambda v: v == "inbound", np.bool_, rows) \
        if "direction" in activities.columns else np.isin(kind, [_KIND_CODE[k] for k in INBOUND_KINDS])
    duration = activities["duration_sec"].to_numpy(float)[rows] if "duration_sec" in activities.columns \
        else np.zeros(len(rows))
    duration = np.nan_to_num(duration, nan=0.0, posinf=0.0, neginf=0.0)
    pricing = _per_event(activities, "page", lambda v: v in PRICING_PAGES, np.bool_, rows)
    by_kind = np.bincount(pos * (_OTHER_KIND + 1) + kind, minlength=n * (_OTHER_KIND + 1)) \
        .reshape(n, _OTHER_KIND + 1)
    f: dict[str, Any] = {name: by_kind[:, _KIND_CODE[k]] for name, k in KIND_COUNTS.items()}
    f["email_open_rate"] = _ratio(f["emails_opened"], f["emails_sent"])
    f["email_click_rate"] = _ratio(f["emails_clicked"], f["emails_sent"])
    is_open, is_page = kind == _KIND_CODE["email_open"], kind == _KIND_CODE["page_view"]
    for days in (7, 30):
        recent = age <= days
        f[f"email_opens_{days}d"] = _count(pos, is_open & recent, n)
        f[f"page_views_{days}d"] = _count(pos, is_page & recent, n)
        f[f"activities_{days}d"] = _count(pos, recent, n)
    f["pricing_page_views"] = _count(pos, is_page & pricing, n)
    f["time_on_site_min"] = _count(pos, is_page, n, duration) / 60.0
    f["avg_seconds_per_page"] = _ratio(f["time_on_site_min"] * 60.0, f["page_views"])
    is_call = (kind == _KIND_CODE["call_inbound"]) | (kind == _KIND_CODE["call_outbound"])
    f["call_minutes"] = _count(pos, is_call, n, duration) / 60
    f["inbound_events"] = _count(pos, inbound, n)
    f["outbound_events"] = _count(pos, ~inbound, n)
    f["inbound_outbound_ratio"] = f["inbound_events"] / (f["outbound_events"] + 1.0)
    f["days_since_last_activity"] = (snapshot_at - _latest(pos, ts, n)) / _DAY
    f["days_since_last_inbound"] = (snapshot_at - _latest(pos[inbound], ts[inbound], n)) / _DAY
    f["first_response_hours"] = (_latest(pos[~inbound], ts[~inbound], n, earliest=True) - created) / _HOUR
    f["active_days"] = _active_days(pos, ts, n)
    flags = _per_event(activities, "note", _note_flags, np.uint8, rows)
    noted = flags != 0
    by_lead = np.zeros(n, dtype=np.uint8)
    np.bitwise_or.at(by_lead, pos[noted], flags[noted])
    for bit, key in enumerate(NOTE_KEYWORDS):
        f[f"note_{key}"] = (by_lead >> bit) & 1
    return [(name, np.asarray(values, dtype="float64")) for name, values in f.items()]


def activity_features(activities: pd.DataFrame, lead_ids: pd.Index, created_at: np.ndarray,
                      snapshot_at: np.ndarray) -> pd.DataFrame:
    """Engagement counts, rates, recency and call-note flags from events before each snapshot."""
    stamps = _timestamps(activities["timestamp"], "activities.timestamp")
    columns = _engagement(activities, stamps, pd.Series(lead_ids), created_at, snapshot_at)
    return _frame(columns, len(lead_ids)).set_axis(lead_ids)


@lru_cache(maxsize=64)
def _column_index(names: tuple[Any, ...]) -> pd.Index:
    return pd.Index(list(names))


def _block(values: np.ndarray | pd.Series) -> Any:
    if isinstance(values, np.ndarray):
        return values
    return values.to_numpy() if isinstance(values.dtype, np.dtype) else values.array.copy()


def _frame(columns: list[tuple[Any, Any]], n: int) -> pd.DataFrame:
    """The columns (NumPy arrays, or lead columns passed through) as one frame, dtypes as given."""
    names = _column_index(tuple(name for name, _ in columns))
    arrays = [_block(values) for _, values in columns]
    if create_dataframe_from_blocks is None:  # pandas 2.x
        frame = pd.DataFrame({i: pd.Series(a, dtype=a.dtype, copy=True) for i, a in enumerate(arrays)})
        return frame.set_axis(names, axis=1)
    same: dict[Any, list[int]] = {}
    blocks = []
    for i, values in enumerate(arrays):
        if isinstance(values, np.ndarray):
            same.setdefault(values.dtype, []).append(i)
        else:
            blocks.append((values, np.array([i])))
    blocks += [(np.stack([arrays[i] for i in where]), np.array(where)) for where in same.values()]
    return create_dataframe_from_blocks(blocks, index=pd.RangeIndex(n), columns=names)


def build_snapshot(leads: pd.DataFrame, activities: pd.DataFrame, *, snapshot_days: float,
                   as_of: pd.Timestamp | None = None,
                   placeholders: Iterable[str] = DEFAULT_PLACEHOLDERS,
                   exclude: Iterable[str] = ()) -> pd.DataFrame:
    """One row per lead (input order): ``lead_id``, ``created_at``, ``snapshot_at`` and features.

    ``exclude`` names post-outcome lead columns (e.g. ``sales_status``) that must never be features.
    The same code builds one lead (as the API does) and a million: column-wise NumPy work, with the
    text work (placeholders, categories, seniority, note keywords) done once per distinct value.
    """
    _require(leads, LEAD_COLUMNS, "leads")
    _require(activities, ACTIVITY_COLUMNS, "activities")
    ids = leads["lead_id"]
    if len(ids) > 1 and ids.duplicated().any():
        raise DataValidationError("leads table has duplicated lead_id values")
    created = _timestamps(leads["created_at"], "leads.created_at")
    snap = _snapshot_at(created, snapshot_days, as_of)
    stamps = _timestamps(activities["timestamp"], "activities.timestamp")
    columns = [("lead_id", ids), ("created_at", created), ("snapshot_at", snap)]
    columns += _profile(leads, created, snap, placeholders, exclude)
    columns += _engagement(activities, stamps, ids, created, snap.astype("datetime64[ms]"))
    return _frame(columns, len(ids))


def data_end(tables: Mapping[str, pd.DataFrame]) -> pd.Timestamp:
    """The latest moment the extract observed: the newest lead, activity or conversion."""
    stamps = [pd.to_datetime(tables["leads"]["created_at"]).max(),
              pd.to_datetime(tables["activities"]["timestamp"]).max()]
    if "outcomes" in tables:
        stamps.append(pd.to_datetime(tables["outcomes"]["converted_at"]).max())
    return pd.Timestamp(max(s for s in stamps if not pd.isna(s)))


def attach_labels(snapshot: pd.DataFrame, outcomes: pd.DataFrame, *, label_window_days: float,
                  end: pd.Timestamp) -> pd.DataFrame:
    """Add ``label`` (Int8, missing unless known) and ``status`` (closed/open/converted_before)."""
    _require(outcomes, ("lead_id", "converted_at"), "outcomes")
    # in NumPy nanoseconds (exact for every unit pandas gives here); NaT compares False, as fillna(False)
    known = pd.to_datetime(outcomes["converted_at"]).to_numpy("datetime64[ns]")
    pos = pd.Index(outcomes["lead_id"]).get_indexer(snapshot["lead_id"])  # duplicated ids raise, as .map
    converted_at = np.where(pos >= 0, known[np.maximum(pos, 0)] if len(known) else np.datetime64("NaT", "ns"),
                            np.datetime64("NaT", "ns"))
    snap = snapshot["snapshot_at"].to_numpy("datetime64[ns]")
    window_end = snap + np.timedelta64(pd.Timedelta(days=label_window_days).value, "ns")
    before = converted_at <= snap
    is_open = (window_end > pd.Timestamp(end).to_datetime64()) & ~before
    hit = (converted_at > snap) & (converted_at <= window_end)
    label = pd.array(hit.astype("int8"), dtype="Int8")
    label[before | is_open] = pd.NA
    status = np.select([before, is_open], ["converted_before", "open"], "closed")
    return snapshot.assign(label=pd.Series(label, index=snapshot.index), status=status)


def feature_columns(snapshot: pd.DataFrame) -> list[str]:
    """The feature columns of a snapshot table (everything but ids, times and labels)."""
    return [c for c in snapshot.columns if c not in META_COLUMNS]
