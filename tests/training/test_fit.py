from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import make_flat_leads

from leadscore.artifacts.bundle import load_bundle, save_bundle
from leadscore.core.exceptions import ModelIntegrityError, TargetError
from leadscore.scoring.scorer import Scorer, to_score
from leadscore.training.fit import fit_table, make_holdout


def test_time_holdout_takes_the_most_recent_rows():
    times = pd.Series(pd.date_range("2024-01-01", periods=10, freq="D")).sample(frac=1, random_state=0)
    y = pd.Series([0, 1] * 5)
    holdout = make_holdout(y, times=times.reset_index(drop=True), test_size=0.3)
    chosen = times.reset_index(drop=True).iloc[holdout.valid]
    assert sorted(chosen.dt.day) == [8, 9, 10]
    assert len(holdout.train) == 7 and "time" in holdout.method


def test_fit_table_excludes_open_leads_and_reports_each_candidate(caplog):
    leads = make_flat_leads(500, seed=4)
    leads.loc[:49, "converted"] = ""  # open leads: outcome not known yet
    result = fit_table(leads, target="converted", id_column="lead_id", time_column="created",
                       candidates=["logistic", "lightgbm"])
    assert result.bundle.metadata["rows"] == 450
    assert set(result.validation) == {"logistic", "lightgbm", "champion"}
    best_single = max(("logistic", "lightgbm"), key=lambda n: result.validation[n]["roc_auc"])
    assert result.chosen in (best_single, "ensemble")
    assert "50 row(s) with an empty target" in caplog.text
    assert result.bundle.metadata["training_window"][0].startswith("2024-01")


def test_fit_table_needs_both_classes_in_numbers():
    leads = make_flat_leads(200, seed=5)
    leads["converted"] = ["yes"] * 5 + ["no"] * 195
    with pytest.raises(TargetError, match="at least 10 rows of each class"):
        fit_table(leads, target="converted")


def test_bundle_roundtrip_and_tamper_check(tmp_path):
    leads = make_flat_leads(300, seed=6)
    result = fit_table(leads, target="converted", id_column="lead_id", candidates=["logistic"])
    save_bundle(result.bundle, tmp_path / "m")
    loaded = load_bundle(tmp_path / "m")
    now = pd.Timestamp("2026-01-01", tz="UTC")
    a = Scorer(result.bundle, "v").score_frame(leads.drop(columns=["converted"]), now=now)
    b = Scorer(loaded, "v").score_frame(leads.drop(columns=["converted"]), now=now)
    pd.testing.assert_frame_equal(a, b)
    raw = bytearray((tmp_path / "m" / "model.joblib").read_bytes())
    raw[100] ^= 0xFF
    (tmp_path / "m" / "model.joblib").write_bytes(bytes(raw))
    with pytest.raises(ModelIntegrityError, match="expected sha256"):
        load_bundle(tmp_path / "m")


def test_scores_are_rounded_percentages():
    assert to_score(np.array([0.0, 0.004, 0.005001, 0.7, 0.996, 1.0])).tolist() == [0, 0, 1, 70, 100,
                                                                                   100]


def test_score_is_identical_alone_and_in_batch():
    leads = make_flat_leads(300, seed=7)
    result = fit_table(leads, target="converted", id_column="lead_id", candidates=["lightgbm"])
    scorer, now = Scorer(result.bundle, "v"), pd.Timestamp("2026-01-01", tz="UTC")
    batch = scorer.score_frame(leads, now=now)
    for i in (0, 10, 299):
        alone = scorer.score_frame(leads.iloc[[i]].reset_index(drop=True), now=now)
        pd.testing.assert_frame_equal(alone, batch.iloc[[i]].reset_index(drop=True))
