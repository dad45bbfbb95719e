"""On the demo data: the `social_ads` source (only in the last 4 months) is flagged in the first month it
appears, and the months before it stay quiet. A logistic champion keeps the training short."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest
from conftest import REPO

from leadscore.artifacts.bundle import load_bundle
from leadscore.core.config import load_params
from leadscore.demo import generate_crm, write_crm
from leadscore.monitoring.drift import DriftThresholds, drift_by_period
from leadscore.stages.features import build_features
from leadscore.stages.split import write_split
from leadscore.stages.train import train_stage

pytestmark = pytest.mark.slow


def test_demo_drift_flags_social_ads_in_its_first_month_and_nothing_before(tmp_path):
    params = load_params(REPO / "params.yaml")
    params = replace(params, comparison=replace(params.comparison, candidates=("logistic",), n_trials=0,
                                                time_budget_seconds=0.0, ensemble=False),
                     segments=replace(params.segments, column=None))
    write_crm(generate_crm(params.demo.n_leads, params.demo.seed), tmp_path / "data")
    build_features(tmp_path / "data/raw", tmp_path / "snapshots.parquet", params)
    write_split(tmp_path / "snapshots.parquet", tmp_path / "split", params.test_months)
    train_stage(tmp_path / "split/train.parquet", tmp_path / "models", params)
    bundle = load_bundle(tmp_path / "models/champion")
    scored = pd.concat([pd.read_parquet(tmp_path / f"split/{name}.parquet") for name in ("test", "open")],
                       ignore_index=True)
    settings = params.monitoring
    periods = drift_by_period(scored, bundle, "demo", times=scored["created_at"], by="month",
                              thresholds=DriftThresholds.from_settings(settings), ignore=settings.ignore)
    states = {p["period"]: {f["feature"]: f for f in p["features"]} for p in periods}
    first = min(pd.Timestamp(t) for t in scored.loc[scored["source"].eq("social_ads"), "created_at"])
    first_month = f"{first:%Y-%m}-01"
    source = states[first_month]["source"]
    assert source["state"] == "alert" and "social_ads" in source["reason"], source
    quiet = [p for p in periods if p["period"] < first_month and p["n"] >= settings.min_rows]
    assert quiet, "the test period has months before social_ads"
    for p in quiet:
        loud = [(f["feature"], f["reason"]) for f in p["features"] if f["state"] != "ok"]
        assert loud == [], (p["period"], loud)
