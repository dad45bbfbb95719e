"""Point-in-time lead rows from the relational CRM tables (leads, activities, outcomes).

A lead's features are computed *as of* its snapshot time from its own profile and only the activities
strictly before that time. The same functions build training rows, score a batch and score one lead,
so there is no train/serve skew: a lead scored alone gets exactly the features it gets in a batch.

Label: 1 if the lead converts in ``(snapshot_at, snapshot_at + label_window_days]``, 0 if it does not
and that window has closed by the end of the data. Leads whose window is still open, and leads that
converted before their snapshot, have no label (they are scored, never counted as negatives).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from leadscore.core.config import DEFAULT_PLACEHOLDERS
from leadscore.core.exceptions import DataValidationError
from leadscore.data.schema import normalize_category
from leadscore.data.tables import clean_placeholders, parse_numeric

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


def _require(frame: pd.DataFrame, columns: Iterable[str], table: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataValidationError(f"{table} table is missing column(s): {', '.join(missing)}")


def _timestamps(values: pd.Series, name: str) -> pd.Series:
    stamps = pd.to_datetime(values, errors="coerce")
    if getattr(stamps.dt, "tz", None) is not None:
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    bad = stamps.isna() & values.notna()
    if bad.any():
        raise DataValidationError(f"{name}: {int(bad.sum())} value(s) are not timestamps, "
                                  f"e.g. {values[bad].iloc[0]!r}")
    return stamps.astype("datetime64[ms]")


def snapshot_times(created_at: pd.Series, snapshot_days: float,
                   as_of: pd.Timestamp | None = None) -> pd.Series:
    """``created_at + snapshot_days``, but never later than ``as_of`` (for leads younger than that)."""
    times = created_at + pd.Timedelta(days=snapshot_days)
    if as_of is None:
        return times
    cap = pd.Timestamp(as_of)
    return times.where(times <= cap, cap)


def seniority(titles: pd.Series) -> pd.Series:
    """Seniority band from a free-text job title ("VP of Sales" -> "vp"); missing stays missing."""
    folded = titles.astype("object").map(lambda v: v.casefold() if isinstance(v, str) else "")
    result: pd.Series = pd.Series([np.nan] * len(titles), index=titles.index, dtype="object")
    for band, pattern in SENIORITY_PATTERNS:
        hit = result.isna() & folded.str.contains(pattern, regex=True)
        result = result.mask(hit, band)
    return result


def profile_features(leads: pd.DataFrame, snapshot_at: pd.Series,
                     placeholders: Iterable[str], exclude: Iterable[str]) -> pd.DataFrame:
    """Profile and timing features of each lead; extra lead columns pass through cleaned."""
    placeholders = tuple(placeholders)
    clean = {c: clean_placeholders(leads[c], placeholders) for c in leads.columns
             if c not in set(exclude)}
    out = pd.DataFrame(index=leads.index)
    for name in PROFILE_CATEGORIES:
        if name in clean:
            out[name] = normalize_category(clean[name])
    out["seniority"] = seniority(clean["job_title"]) if "job_title" in clean else np.nan
    budget = parse_numeric(clean["budget"]) if "budget" in clean else pd.Series(np.nan, leads.index)
    out["budget"] = budget.where(budget > 0)
    for name in ("phone", "company_name"):
        out[f"has_{name}"] = clean[name].notna().astype("float64") if name in clean else np.nan
    present = [clean[c].notna() for c in CONTACT_FIELDS if c in clean]
    out["contact_completeness"] = (sum(present) / len(CONTACT_FIELDS)) if present else np.nan
    created = leads["created_at"]
    out["created_month"] = created.dt.month.astype("float64")
    out["created_dayofweek"] = created.dt.day_of_week.astype("float64")
    out["created_hour"] = created.dt.hour.astype("float64")
    out["created_on_weekend"] = (created.dt.day_of_week >= 5).astype("float64")
    out["days_since_creation"] = (snapshot_at - created).dt.total_seconds() / 86400.0
    for name, values in clean.items():  # columns this module does not know: let the model decide
        if name not in out.columns and name not in NOT_PASSED_THROUGH:
            out[name] = values
    return out


def _count(pos: np.ndarray, mask: np.ndarray, n: int, weights: np.ndarray | None = None) -> np.ndarray:
    return np.bincount(pos[mask], weights=None if weights is None else weights[mask], minlength=n)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def activity_features(activities: pd.DataFrame, lead_ids: pd.Index, created_at: np.ndarray,
                      snapshot_at: np.ndarray) -> pd.DataFrame:
    """Engagement counts, rates, recency and call-note flags from events before each snapshot."""
    n = len(lead_ids)
    pos_all = lead_ids.get_indexer(pd.Index(activities["lead_id"]))
    known = pos_all >= 0
    ts_all = activities["timestamp"].to_numpy("datetime64[ms]")
    keep = known.copy()
    keep[known] = ts_all[known] < snapshot_at[pos_all[known]]
    ev = activities.loc[keep]
    pos, ts = pos_all[keep], ts_all[keep]
    age = (snapshot_at[pos] - ts) / np.timedelta64(1, "D")
    kind = ev["activity_type"].astype("object").to_numpy()
    inbound = (ev["direction"].astype("object").to_numpy() == "inbound") if "direction" in ev \
        else np.isin(kind, ["email_open", "email_click", "page_view", "form_submit",
                            "quote_request", "call_inbound"])
    duration = ev["duration_sec"].to_numpy(float) if "duration_sec" in ev else np.zeros(len(ev))
    duration = np.nan_to_num(duration, nan=0.0, posinf=0.0, neginf=0.0)
    page = ev["page"].astype("object").to_numpy() if "page" in ev else np.full(len(ev), None)
    every = np.ones(len(ev), dtype=bool)
    f: dict[str, Any] = {}
    for name, kinds in {"emails_sent": "email_sent", "emails_opened": "email_open",
                        "emails_clicked": "email_click", "page_views": "page_view",
                        "form_submissions": "form_submit", "quote_requests": "quote_request",
                        "calls_inbound": "call_inbound", "calls_outbound": "call_outbound",
                        "meetings": "meeting"}.items():
        f[name] = _count(pos, kind == kinds, n)
    f["email_open_rate"] = _ratio(f["emails_opened"], f["emails_sent"])
    f["email_click_rate"] = _ratio(f["emails_clicked"], f["emails_sent"])
    for days in (7, 30):
        f[f"email_opens_{days}d"] = _count(pos, (kind == "email_open") & (age <= days), n)
        f[f"page_views_{days}d"] = _count(pos, (kind == "page_view") & (age <= days), n)
        f[f"activities_{days}d"] = _count(pos, age <= days, n)
    f["pricing_page_views"] = _count(pos, (kind == "page_view") & np.isin(page, ["pricing", "quote"]), n)
    f["time_on_site_min"] = _count(pos, kind == "page_view", n, duration) / 60.0
    f["avg_seconds_per_page"] = _ratio(f["time_on_site_min"] * 60.0, f["page_views"])
    f["call_minutes"] = _count(pos, np.isin(kind, ["call_inbound", "call_outbound"]), n, duration) / 60
    f["inbound_events"] = _count(pos, inbound, n)
    f["outbound_events"] = _count(pos, ~inbound, n)
    f["inbound_outbound_ratio"] = f["inbound_events"] / (f["outbound_events"] + 1.0)
    frame = pd.DataFrame({k: np.asarray(v, dtype="float64") for k, v in f.items()})
    by_lead = pd.DataFrame({"pos": pos, "ts": ts, "inbound": inbound, "every": every})
    last = by_lead.groupby("pos")["ts"].max().reindex(range(n))
    last_in = by_lead[inbound].groupby("pos")["ts"].max().reindex(range(n))
    first_out = by_lead[~inbound].groupby("pos")["ts"].min().reindex(range(n))
    frame["days_since_last_activity"] = (snapshot_at - last.to_numpy()) / np.timedelta64(1, "D")
    frame["days_since_last_inbound"] = (snapshot_at - last_in.to_numpy()) / np.timedelta64(1, "D")
    frame["first_response_hours"] = (first_out.to_numpy() - created_at) / np.timedelta64(1, "h")
    active = ts.astype("datetime64[D]")
    frame["active_days"] = pd.Series(active).groupby(pos).nunique().reindex(range(n), fill_value=0) \
        .to_numpy("float64")
    notes = ev["note"] if "note" in ev else pd.Series([], dtype="object")
    has_note = notes.notna().to_numpy() if len(notes) else np.zeros(len(ev), bool)
    folded = notes[has_note].astype(str).str.casefold() if has_note.any() else pd.Series([], dtype=str)
    for key, pattern in NOTE_KEYWORDS.items():
        hit = np.zeros(len(ev), dtype=bool)
        if has_note.any():
            hit[has_note] = folded.str.contains(pattern, regex=True).to_numpy()
        frame[f"note_{key}"] = (_count(pos, hit, n) > 0).astype("float64")
    frame.index = lead_ids
    return frame


def build_snapshot(leads: pd.DataFrame, activities: pd.DataFrame, *, snapshot_days: float,
                   as_of: pd.Timestamp | None = None,
                   placeholders: Iterable[str] = DEFAULT_PLACEHOLDERS,
                   exclude: Iterable[str] = ()) -> pd.DataFrame:
    """One row per lead (input order): ``lead_id``, ``created_at``, ``snapshot_at`` and features.

    ``exclude`` names post-outcome lead columns (e.g. ``sales_status``) that must never be features.
    """
    _require(leads, LEAD_COLUMNS, "leads")
    _require(activities, ACTIVITY_COLUMNS, "activities")
    leads = leads.reset_index(drop=True)
    if leads["lead_id"].duplicated().any():
        raise DataValidationError("leads table has duplicated lead_id values")
    created = _timestamps(leads["created_at"], "leads.created_at")
    leads = leads.assign(created_at=created)
    snap = snapshot_times(created, snapshot_days, as_of)
    activities = activities.assign(
        timestamp=_timestamps(activities["timestamp"], "activities.timestamp"))
    ids = pd.Index(leads["lead_id"])
    profile = profile_features(leads, snap, placeholders, exclude)
    engagement = activity_features(activities, ids, created.to_numpy("datetime64[ms]"),
                                   snap.to_numpy("datetime64[ms]"))
    meta = pd.DataFrame({"lead_id": leads["lead_id"], "created_at": created, "snapshot_at": snap})
    return pd.concat([meta, profile, engagement.reset_index(drop=True)], axis=1)


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
    converted_at = snapshot["lead_id"].map(
        outcomes.set_index("lead_id")["converted_at"].pipe(pd.to_datetime))
    window_end = snapshot["snapshot_at"] + pd.Timedelta(days=label_window_days)
    before = (converted_at <= snapshot["snapshot_at"]).fillna(False).to_numpy(bool)
    is_open = (window_end > end).to_numpy(bool) & ~before
    hit = ((converted_at > snapshot["snapshot_at"]) & (converted_at <= window_end)).fillna(False)
    label = pd.Series(hit.astype("int8"), index=snapshot.index).astype("Int8")
    label = label.mask(pd.Series(before | is_open, index=snapshot.index))
    status = np.select([before, is_open], ["converted_before", "open"], "closed")
    return snapshot.assign(label=label, status=status)


def feature_columns(snapshot: pd.DataFrame) -> list[str]:
    """The feature columns of a snapshot table (everything but ids, times and labels)."""
    return [c for c in snapshot.columns if c not in META_COLUMNS]
