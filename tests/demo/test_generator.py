"""The demo CRM generator: determinism, schema, planted patterns and label_probability."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import REPO
from scipy import stats

from leadscore.core.config import DemoParams, load_params
from leadscore.core.exceptions import ConfigError, DataValidationError
from leadscore.demo import DEMO_DEFAULTS, CRMData, generate_crm, label_probability, write_crm
from leadscore.demo.latent import DELAY_SCALE_DAYS, DELAY_SHAPE

N_LEADS = 4_000
DAY = pd.Timedelta(days=1)
PLACEHOLDERS = {"select", "", "n/a", "unknown", "-"}
LEAD_COLUMNS = ["lead_id", "created_at", "source", "vertical", "company_size", "region",
                "job_title", "budget", "email_domain_type", "company_name", "phone", "sales_status"]
ACTIVITY_COLUMNS = ["activity_id", "lead_id", "timestamp", "activity_type", "direction",
                    "duration_sec", "page", "note"]


@pytest.fixture(scope="module")
def data() -> CRMData:
    return generate_crm(n_leads=N_LEADS, seed=7)


@pytest.fixture(scope="module")
def events(data: CRMData) -> pd.DataFrame:
    """Activities with the lead's created_at and observed conversion time attached."""
    lead_info = data.leads[["lead_id", "created_at"]].merge(data.outcomes, on="lead_id")
    return data.activities.merge(lead_info, on="lead_id", how="left", validate="many_to_one")


def _clean(values: pd.Series) -> pd.Series:
    return values.map(lambda v: v.strip().casefold() if isinstance(v, str) else None)


def test_defaults_are_the_documented_ones():
    # one home for the demo defaults: the generator, the CLI and params.yaml agree with DemoParams
    assert DEMO_DEFAULTS == asdict(DemoParams()) == asdict(load_params(REPO / "params.yaml").demo)


def test_same_arguments_write_identical_bytes_and_another_seed_differs(tmp_path):
    first = write_crm(generate_crm(n_leads=2_000, seed=11), tmp_path / "a")
    second = write_crm(generate_crm(n_leads=2_000, seed=11), tmp_path / "b")
    other = write_crm(generate_crm(n_leads=2_000, seed=12), tmp_path / "c")
    names = [p.relative_to(tmp_path / "a").as_posix() for p in first]
    assert names == ["raw/leads.parquet", "raw/activities.parquet", "raw/outcomes.parquet",
                     "truth/true_probability.parquet", "README.md"]
    for a, b, c in zip(first, second, other, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name
        if a.suffix == ".parquet":
            assert a.read_bytes() != c.read_bytes(), a.name
    assert not [p for p in (tmp_path / "a").rglob("*") if p.name.endswith(".tmp")]


def test_parquet_has_no_pandas_metadata_and_round_trips(data, tmp_path):
    paths = write_crm(data, tmp_path)
    assert pq.read_schema(paths[0]).metadata is None
    leads = pd.read_parquet(paths[0])
    assert leads["lead_id"].tolist() == data.leads["lead_id"].tolist()
    assert str(leads["created_at"].dtype) == "datetime64[ms]"
    readme = paths[-1].read_text()
    assert "truth/true_probability.parquet" in readme and "sales_status" in readme


def test_tables_have_the_documented_shape(data):
    leads, acts, outcomes, truth = data.leads, data.activities, data.outcomes, data.truth
    assert list(leads.columns) == LEAD_COLUMNS
    assert list(acts.columns) == ACTIVITY_COLUMNS
    assert list(outcomes.columns) == ["lead_id", "converted", "converted_at"]
    assert list(truth.columns) == ["lead_id", "p_convert"]
    assert len(leads) == len(outcomes) == len(truth) == N_LEADS
    assert leads["lead_id"].iloc[0] == "L0000001" and leads["lead_id"].is_unique
    assert leads["lead_id"].is_monotonic_increasing and leads["created_at"].is_monotonic_increasing
    assert (outcomes["lead_id"] == leads["lead_id"]).all()
    assert (truth["lead_id"] == leads["lead_id"]).all()
    for frame, column in ((leads, "created_at"), (acts, "timestamp"), (outcomes, "converted_at")):
        assert str(frame[column].dtype) == "datetime64[ms]"
    assert outcomes["converted"].dtype == np.int8 and acts["activity_id"].dtype == np.int64
    assert all(leads[c].dtype == object for c in LEAD_COLUMNS if c not in ("created_at", "budget"))
    assert truth["p_convert"].between(0, 1, inclusive="neither").all()
    assert 12 <= len(acts) / len(leads) <= 20


def test_activities_are_sorted_and_numbered(data):
    acts = data.activities
    assert (acts["activity_id"].to_numpy() == np.arange(1, len(acts) + 1)).all()
    ordered = acts.sort_values(["lead_id", "timestamp", "activity_id"], kind="stable")
    assert (ordered.index == acts.index).all()


def test_created_at_spans_the_extract_with_business_hours(data):
    created = data.leads["created_at"]
    start = pd.Timestamp(DEMO_DEFAULTS["start"])
    assert data.data_end == start + pd.DateOffset(months=20)
    assert created.min() >= start and created.max() < data.data_end
    assert created.max() - created.min() >= pd.Timedelta(days=18 * 30)
    assert created.dt.day_of_week.isin([5, 6]).mean() < 0.15
    assert created.dt.hour.between(8, 17).mean() > 0.7


def test_conversion_rate_in_range_and_differs_by_vertical(data):
    converted = data.outcomes["converted"]
    assert 0.08 <= converted.mean() <= 0.15
    vertical = _clean(data.leads["vertical"])
    rates = converted.groupby(vertical).mean()
    assert rates["commercial"] > rates["life"] + 0.04
    assert data.truth["p_convert"].groupby(vertical).mean().loc["p&c"] > rates["life"]


def test_social_ads_only_recent_and_converts_less(data):
    social = data.leads["source"] == "social_ads"
    assert social.sum() > 50
    assert data.leads.loc[social, "created_at"].min() >= data.data_end - pd.DateOffset(months=4)
    recent = data.leads["created_at"] >= data.data_end - pd.DateOffset(months=4)
    p = data.truth["p_convert"]
    assert p[social].mean() < 0.5 * p[recent & ~social].mean()
    views = data.activities.loc[data.activities["activity_type"] == "page_view", "lead_id"]
    per_lead = views.value_counts().reindex(data.leads["lead_id"], fill_value=0).to_numpy()
    assert per_lead[social.to_numpy()].mean() > 1.5 * per_lead[(recent & ~social).to_numpy()].mean()


@pytest.mark.parametrize("column", ["vertical", "company_size", "region", "job_title",
                                    "email_domain_type"])
def test_profile_fields_are_messy(data, column):
    values = data.leads[column]
    text = values.dropna()
    assert values.isna().any()
    assert text.map(lambda v: v.strip().casefold() in PLACEHOLDERS).any()
    assert (text != text.str.strip()).any()
    assert (text.str.strip() != text.str.strip().str.upper()).any() or column == "company_size"


def test_messy_vertical_keeps_four_verticals_and_budget_has_gaps(data):
    vertical = _clean(data.leads["vertical"]).dropna()
    assert set(vertical) - PLACEHOLDERS == {"p&c", "health", "life", "commercial"}
    assert data.leads["vertical"].isin(["p&c", "HEALTH ", "health"]).any()
    budget = data.leads["budget"]
    assert 0.15 <= budget.isna().mean() <= 0.25
    assert (budget == 0).any() and (budget.dropna() >= 0).all()


def test_sales_status_leaks_the_outcome(data):
    status, converted = data.leads["sales_status"], data.outcomes["converted"]
    assert ((status == "Closed Won") == (converted == 1)).all()
    old = (data.data_end - data.leads["created_at"] > 120 * DAY) & (converted == 0)
    assert status[old].isin(["Closed Lost", "Disqualified"]).mean() > 0.7


def test_outcomes_are_censored_at_data_end(data):
    outcomes = data.outcomes
    won = outcomes["converted"] == 1
    assert outcomes.loc[won, "converted_at"].notna().all()
    assert outcomes.loc[~won, "converted_at"].isna().all()
    assert (outcomes.loc[won, "converted_at"] <= data.data_end).all()
    assert (outcomes.loc[won, "converted_at"] > data.leads.loc[won, "created_at"]).all()


def test_events_lie_between_creation_and_data_end(data, events):
    assert (events["timestamp"] <= data.data_end).all()
    assert (events["timestamp"] >= events["created_at"]).all()
    converted = events["converted_at"].notna()
    assert (events.loc[converted, "timestamp"] <= events.loc[converted, "converted_at"]).all()


def test_event_columns_follow_the_activity_type(data):
    acts = data.activities
    kind = acts["activity_type"]
    assert set(kind) == {"email_sent", "email_open", "email_click", "page_view", "form_submit",
                         "quote_request", "call_outbound", "call_inbound", "meeting"}
    outbound = kind.isin(["email_sent", "call_outbound", "meeting"])
    assert (acts["direction"] == np.where(outbound, "outbound", "inbound")).all()
    timed = kind.isin(["page_view", "call_outbound", "call_inbound"])
    assert acts.loc[timed, "duration_sec"].notna().all()
    assert acts.loc[~timed, "duration_sec"].isna().all()
    assert (acts["page"].notna() == (kind == "page_view")).all()
    noted = kind.isin(["call_outbound", "call_inbound", "meeting"])
    assert (acts["note"].notna() == noted).all()
    assert acts.loc[noted, "note"].nunique() > 40


def test_opens_follow_sends_and_engagement_tracks_intent(data, events):
    first = events.groupby(["lead_id", "activity_type"])["timestamp"].min().unstack()
    has_open = first["email_open"].notna()
    assert (first.loc[has_open, "email_open"] > first.loc[has_open, "email_sent"]).all()
    counts = data.activities.groupby("lead_id").size().reindex(data.leads["lead_id"], fill_value=0)
    rho = stats.spearmanr(counts.to_numpy(), data.truth["p_convert"]).statistic
    assert 0.1 < rho < 0.9


def test_label_probability_is_exact_for_the_delay_law():
    f7, f97 = stats.gamma.cdf([7, 97], a=DELAY_SHAPE, scale=DELAY_SCALE_DAYS)
    p = np.array([0.0, 0.1, 0.5, 1.0])
    got = label_probability(p, 7, 90)
    np.testing.assert_allclose(got, p * (f97 - f7) / (1 - p * f7))
    assert np.all(np.diff(got) > 0) and got.min() >= 0 and got.max() <= 1
    np.testing.assert_allclose(label_probability(p, 7, 0), 0.0)
    np.testing.assert_allclose(label_probability(p, 0, 10_000), p)


def test_label_probability_rejects_bad_input():
    with pytest.raises(DataValidationError, match="expected probabilities"):
        label_probability([0.2, 1.5], 7, 90)
    with pytest.raises(ConfigError, match="window_days"):
        label_probability([0.2], 7, -1)


def test_label_probability_matches_the_generated_labels(data):
    snapshot, window = 7, 90
    created, converted_at = data.leads["created_at"], data.outcomes["converted_at"]
    delay = (converted_at - created) / DAY
    closed = created + (snapshot + window) * DAY <= data.data_end
    eligible = (closed & ~(delay <= snapshot)).to_numpy()
    label = ((delay > snapshot) & (delay <= snapshot + window)).to_numpy()[eligible]
    expected = label_probability(data.truth["p_convert"].to_numpy(), snapshot, window)[eligible]
    assert 0.08 <= label.mean() <= 0.15
    se = np.sqrt(np.sum(expected * (1 - expected))) / eligible.sum()
    assert abs(label.mean() - expected.mean()) < 4 * se


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"n_leads": 0}, "n_leads"), ({"months": 0}, "months"), ({"seed": -1}, "seed"),
    ({"start": "not a date"}, "start"), ({"n_leads": 10_000_000}, "at most"),
])
def test_generate_crm_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        generate_crm(**kwargs)
