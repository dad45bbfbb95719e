"""Tiny hand-made CRM tables for fast unit tests (the real generator is tested in test_demo.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd

TYPES = ("email_sent", "email_open", "email_click", "page_view", "form_submit",
         "quote_request", "call_outbound", "call_inbound", "meeting")
NOTES = ("asked about pricing, budget approved", "left voicemail", "comparing with a competitor",
         "call back next week", "not interested", "decision maker wants a quote by end of month")


def make_crm(n_leads: int = 60, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Leads, activities and outcomes with the demo schema and some mess."""
    rng = np.random.default_rng(seed)
    created = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.uniform(0, 300, n_leads), unit="D")
    leads = pd.DataFrame({
        "lead_id": [f"L{i:07d}" for i in range(1, n_leads + 1)],
        "created_at": created.astype("datetime64[ms]"),
        "source": rng.choice(["web_form", "Referral", "paid_search ", "Select"], n_leads),
        "vertical": rng.choice(["P&C", "health", "HEALTH ", "Life", None], n_leads),
        "company_size": rng.choice(["1-10", "51-200", "", "1000+"], n_leads),
        "region": rng.choice(["West", "N/A", "midwest"], n_leads),
        "job_title": rng.choice(["CEO", "VP of Sales", "Office Manager", "student", None], n_leads),
        "budget": rng.choice([0.0, 5000.0, 120000.0, np.nan], n_leads),
        "email_domain_type": rng.choice(["business", "Free", "unknown"], n_leads),
        "phone": rng.choice(["+1-555-0100", None], n_leads),
        "company_name": rng.choice(["Acme", None], n_leads),
        "sales_status": rng.choice(["Closed Won", "Closed Lost", "Working"], n_leads),
    })
    per_lead = rng.integers(0, 15, n_leads)
    lead_pos = np.repeat(np.arange(n_leads), per_lead)
    kinds = rng.choice(TYPES, len(lead_pos))
    ts = leads["created_at"].to_numpy()[lead_pos] + pd.to_timedelta(
        rng.exponential(10, len(lead_pos)), unit="D").to_numpy()
    is_call = np.isin(kinds, ["call_outbound", "call_inbound", "meeting"])
    activities = pd.DataFrame({
        "activity_id": np.arange(len(lead_pos)),
        "lead_id": leads["lead_id"].to_numpy()[lead_pos],
        "timestamp": pd.Series(ts).astype("datetime64[ms]"),
        "activity_type": kinds,
        "direction": np.where(np.isin(kinds, ["email_sent", "call_outbound", "meeting"]),
                              "outbound", "inbound"),
        "duration_sec": np.where(kinds == "page_view", rng.uniform(5, 300, len(kinds)), np.nan),
        "page": np.where(kinds == "page_view", rng.choice(["home", "pricing"], len(kinds)), None),
        "note": np.where(is_call, rng.choice(NOTES, len(kinds)), None),
    }).sort_values(["lead_id", "timestamp"], kind="stable").reset_index(drop=True)
    converted = rng.random(n_leads) < 0.3
    converted_at = leads["created_at"] + pd.to_timedelta(rng.uniform(1, 120, n_leads), unit="D")
    outcomes = pd.DataFrame({
        "lead_id": leads["lead_id"],
        "converted": converted.astype("int8"),
        "converted_at": converted_at.where(converted),
    })
    return {"leads": leads, "activities": activities, "outcomes": outcomes}
