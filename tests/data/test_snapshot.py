"""Point-in-time snapshots: no look-ahead, single == batch, labels and open leads, exclusions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from crm_factory import make_crm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadscore.core.exceptions import DataValidationError
from leadscore.data import snapshot

SNAPSHOT_DAYS = 14


@pytest.fixture(scope="module")
def crm() -> dict[str, pd.DataFrame]:
    return make_crm(80, seed=3)


def build(crm, leads=None, activities=None, **kwargs):
    return snapshot.build_snapshot(crm["leads"] if leads is None else leads,
                                   crm["activities"] if activities is None else activities,
                                   snapshot_days=SNAPSHOT_DAYS, exclude=["sales_status"], **kwargs)


def test_features_are_the_documented_list(crm):
    assert snapshot.feature_columns(build(crm)) == list(snapshot.FEATURES)
    assert len(snapshot.FEATURES) == 51  # the count the README gives


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lead=st.integers(0, 79), delay_hours=st.floats(0, 24 * 200), kind=st.sampled_from(
    ["email_open", "page_view", "quote_request", "call_inbound", "meeting", "email_sent"]))
def test_an_event_after_the_snapshot_never_changes_features(crm, lead, delay_hours, kind):
    base = build(crm)
    row = base.iloc[lead]
    late = pd.DataFrame({
        "activity_id": [10**9], "lead_id": [row["lead_id"]],
        "timestamp": [row["snapshot_at"] + pd.Timedelta(hours=delay_hours)],
        "activity_type": [kind], "direction": ["inbound"], "duration_sec": [600.0],
        "page": ["pricing"], "note": ["budget approved, decision maker, urgent"],
    })
    activities = pd.concat([crm["activities"], late], ignore_index=True)
    pd.testing.assert_frame_equal(build(crm, activities=activities), base)


def test_an_event_before_the_snapshot_does_change_features(crm):
    base = build(crm)
    row = base.iloc[0]
    early = pd.DataFrame({
        "activity_id": [10**9], "lead_id": [row["lead_id"]],
        "timestamp": [row["snapshot_at"] - pd.Timedelta(hours=1)],
        "activity_type": ["quote_request"], "direction": ["inbound"], "duration_sec": [np.nan],
        "page": [None], "note": [None]})
    changed = build(crm, activities=pd.concat([crm["activities"], early], ignore_index=True))
    assert changed.loc[0, "quote_requests"] == base.loc[0, "quote_requests"] + 1
    assert changed.loc[0, "days_since_last_activity"] == pytest.approx(1 / 24)


def test_a_lead_scored_alone_gets_its_batch_features(crm):
    batch = build(crm)
    for i in range(len(crm["leads"])):
        alone = build(crm, leads=crm["leads"].iloc[[i]])
        pd.testing.assert_frame_equal(alone, batch.iloc[[i]].reset_index(drop=True), check_exact=True)


def as_read_by_id(crm, i):
    """Lead ``i`` and only its own activities, as the API reads them from the database."""
    lead = crm["leads"].iloc[[i]]
    return lead, crm["activities"][crm["activities"]["lead_id"] == lead["lead_id"].iloc[0]]


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 120), seed=st.integers(0, 10_000), pick=st.integers(0, 10**6),
       text=st.sampled_from(["object", "str"]), as_of_day=st.one_of(st.none(), st.integers(0, 320)))
def test_one_lead_read_by_id_equals_its_row_in_a_batch(n, seed, pick, text, as_of_day):
    crm = make_crm(n, seed=seed)
    if text == "str":  # the dtypes the Parquet extract and the database reader give
        crm = {k: v.astype({c: "str" for c in v.columns if v[c].dtype == object}) for k, v in crm.items()}
    as_of = None if as_of_day is None else pd.Timestamp("2024-01-01") + pd.Timedelta(days=as_of_day)
    batch = build(crm, as_of=as_of)
    i = pick % n
    lead, activities = as_read_by_id(crm, i)
    alone = build(crm, leads=lead, activities=activities, as_of=as_of)
    pd.testing.assert_frame_equal(alone, batch.iloc[[i]].reset_index(drop=True), check_exact=True)


def test_a_lead_without_activities(crm):
    lead, activities = as_read_by_id(crm, 0)
    row = build(crm, leads=lead, activities=activities.iloc[:0]).iloc[0]
    counts = ["emails_sent", "page_views", "meetings", "activities_30d", "inbound_events", "active_days",
              "time_on_site_min", "call_minutes", "note_budget", "note_no_answer"]
    assert (row[counts] == 0).all()
    nan = ["email_open_rate", "avg_seconds_per_page", "days_since_last_activity",
           "days_since_last_inbound", "first_response_hours"]
    assert row[nan].isna().all()
    assert row["inbound_outbound_ratio"] == 0


def one_event(crm, at, **fields):
    lead = crm["leads"].iloc[[0]]
    event = {"activity_id": 1, "lead_id": lead["lead_id"].iloc[0], "timestamp": at,
             "activity_type": "quote_request", "direction": "inbound", "duration_sec": 60.0,
             "page": "pricing", "note": "budget approved", **fields}
    return lead, pd.DataFrame([event]).astype({"timestamp": "datetime64[ms]"})


def test_an_event_at_the_snapshot_instant_is_excluded(crm):
    snapshot_at = build(crm).loc[0, "snapshot_at"]
    lead, at_instant = one_event(crm, snapshot_at)
    assert build(crm, leads=lead, activities=at_instant).loc[0, "quote_requests"] == 0
    lead, just_before = one_event(crm, snapshot_at - pd.Timedelta(milliseconds=1))
    row = build(crm, leads=lead, activities=just_before).iloc[0]
    assert (row["quote_requests"], row["note_budget"]) == (1, 1)


def test_null_notes_pages_and_durations(crm):
    created = crm["leads"].loc[0, "created_at"]
    lead, events = one_event(crm, created + pd.Timedelta(hours=1), activity_type="page_view",
                             page=None, note=None, duration_sec=None)
    row = build(crm, leads=lead, activities=events).iloc[0]
    assert (row["page_views"], row["pricing_page_views"], row["time_on_site_min"]) == (1, 0, 0)
    assert row["avg_seconds_per_page"] == 0
    assert not row[[f"note_{key}" for key in snapshot.NOTE_KEYWORDS]].any()


def test_tz_aware_timestamps_are_compared_in_utc(crm):
    naive = build(crm)
    leads = crm["leads"].assign(created_at=crm["leads"]["created_at"].dt.tz_localize("UTC")
                                .dt.tz_convert("America/New_York"))
    activities = crm["activities"].assign(
        timestamp=crm["activities"]["timestamp"].dt.tz_localize("UTC").dt.tz_convert("Asia/Tokyo"))
    pd.testing.assert_frame_equal(build(crm, leads=leads, activities=activities), naive, check_exact=True)


def test_the_frame_is_the_same_without_block_assembly(crm, monkeypatch):
    """pandas 2.x has no create_dataframe_from_blocks; the fallback gives the same frame."""
    fast = build(crm)
    monkeypatch.setattr(snapshot, "create_dataframe_from_blocks", None)
    pd.testing.assert_frame_equal(build(crm), fast, check_exact=True)


def test_as_of_caps_the_snapshot_time(crm):
    as_of = crm["leads"]["created_at"].max() - pd.Timedelta(days=3)
    snap = build(crm, as_of=as_of)
    assert (snap["snapshot_at"] <= as_of).all()
    young = snap["created_at"] > as_of - pd.Timedelta(days=SNAPSHOT_DAYS)
    assert young.any() and (snap.loc[young, "days_since_creation"] < SNAPSHOT_DAYS).all()


def test_post_outcome_column_is_excluded_by_rule(crm):
    with_rule = build(crm)
    without_rule = snapshot.build_snapshot(crm["leads"], crm["activities"],
                                           snapshot_days=SNAPSHOT_DAYS, exclude=())
    assert "sales_status" not in with_rule.columns
    assert "sales_status" in without_rule.columns  # the rule, not luck, keeps it out


def test_profile_cleaning_and_seniority(crm):
    snap = build(crm)
    assert set(snap["vertical"].dropna()) <= {"p&c", "health", "life"}
    assert "select" not in set(snap["source"].dropna())
    assert (snap["budget"].dropna() > 0).all()
    titles = pd.Series(["CEO", "VP of Sales", "Director, Ops", "Office Manager", "Student", "Analyst",
                        None])
    assert snapshot.seniority(titles).tolist()[:6] == ["c_level", "vp", "director", "manager",
                                                       "student", "individual"]
    assert pd.isna(snapshot.seniority(titles).iloc[6])


def test_note_keywords_and_counts():
    crm = make_crm(1, seed=0)
    lead = crm["leads"].iloc[[0]]
    created = lead["created_at"].iloc[0]
    activities = pd.DataFrame({
        "activity_id": [1, 2, 3], "lead_id": [lead["lead_id"].iloc[0]] * 3,
        "timestamp": [created + pd.Timedelta(hours=h) for h in (2, 30, 50)],
        "activity_type": ["call_outbound", "call_inbound", "email_sent"],
        "direction": ["outbound", "inbound", "outbound"], "duration_sec": [120.0, 60.0, np.nan],
        "page": [None] * 3, "note": ["Left voicemail", "Comparing with a competitor; budget approved",
                                     None]})
    row = snapshot.build_snapshot(lead, activities, snapshot_days=14).iloc[0]
    assert row["first_response_hours"] == pytest.approx(2.0)
    assert (row["calls_outbound"], row["calls_inbound"], row["emails_sent"]) == (1, 1, 1)
    assert row["call_minutes"] == pytest.approx(3.0)
    assert (row["note_no_answer"], row["note_competitor"], row["note_budget"]) == (1, 1, 1)
    assert row["note_not_interested"] == 0
    assert row["inbound_outbound_ratio"] == pytest.approx(1 / 3)


def test_labels_open_and_converted_before():
    created = pd.Timestamp("2024-01-01")
    snap = pd.DataFrame({"lead_id": ["a", "b", "c", "d", "e"],
                         "snapshot_at": [created + pd.Timedelta(days=7)] * 4
                         + [created + pd.Timedelta(days=200)]})
    outcomes = pd.DataFrame({"lead_id": ["a", "b", "c", "d", "e"], "converted_at": [
        created + pd.Timedelta(days=30),    # a: inside the window -> 1
        created + pd.Timedelta(days=3),     # b: before the snapshot -> no label
        pd.NaT,                             # c: never, window closed -> 0
        created + pd.Timedelta(days=120),   # d: after the window -> 0
        pd.NaT]})                           # e: window not closed by the end -> open
    end = created + pd.Timedelta(days=250)
    labelled = snapshot.attach_labels(snap, outcomes, label_window_days=90, end=end)
    assert labelled["label"].tolist()[:1] == [1]
    assert pd.isna(labelled["label"].iloc[1]) and pd.isna(labelled["label"].iloc[4])
    assert labelled["label"].iloc[2] == 0 and labelled["label"].iloc[3] == 0
    assert labelled["status"].tolist() == ["closed", "converted_before", "closed", "closed", "open"]


def test_missing_columns_are_reported(crm):
    with pytest.raises(DataValidationError, match="leads table is missing column.*created_at"):
        build(crm, leads=crm["leads"].drop(columns=["created_at"]))


def _labels_by_pandas(snap: pd.DataFrame, outcomes: pd.DataFrame, window: float, end: pd.Timestamp):
    """The label rule written plainly in pandas: the oracle of the NumPy version."""
    converted_at = snap["lead_id"].map(outcomes.set_index("lead_id")["converted_at"].pipe(pd.to_datetime))
    window_end = snap["snapshot_at"] + pd.Timedelta(days=window)
    before = (converted_at <= snap["snapshot_at"]).fillna(False).to_numpy(bool)
    is_open = (window_end > end).to_numpy(bool) & ~before
    hit = ((converted_at > snap["snapshot_at"]) & (converted_at <= window_end)).fillna(False)
    label = pd.Series(hit.astype("int8"), index=snap.index).astype("Int8")
    label = label.mask(pd.Series(before | is_open, index=snap.index))
    return label, np.select([before, is_open], ["converted_before", "open"], "closed")


@settings(max_examples=40, deadline=None)
@given(offsets=st.lists(st.one_of(st.none(), st.floats(-30, 150), st.sampled_from([0.0, 12.5, 30.0, 90.0])),
                       min_size=1, max_size=12),
       window=st.sampled_from([30.0, 90.0, 12.5]), end_days=st.floats(0, 200))
def test_labels_follow_the_rule_at_every_boundary(offsets, window, end_days):
    start = pd.Timestamp("2025-01-01")
    snap = pd.DataFrame({"lead_id": [f"L{i}" for i in range(len(offsets))],
                         "snapshot_at": (start + pd.to_timedelta(np.arange(len(offsets)), unit="D"))
                         .astype("datetime64[ms]")})
    converted = [None if o is None else snap["snapshot_at"][i] + pd.Timedelta(days=o)
                 for i, o in enumerate(offsets)]
    outcomes = pd.DataFrame({"lead_id": snap["lead_id"][::-1].to_numpy(),
                             "converted_at": pd.Series(converted[::-1], dtype="datetime64[ms]")})
    end = start + pd.Timedelta(days=end_days)
    got = snapshot.attach_labels(snap, outcomes, label_window_days=window, end=end)
    label, status = _labels_by_pandas(snap, outcomes, window, end)
    pd.testing.assert_series_equal(got["label"], label, check_names=False)
    assert got["status"].tolist() == status.tolist()
