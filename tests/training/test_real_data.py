"""`fit` and `score` on a real public lead-like dataset (UCI bank marketing), out of time."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import BANK_FULL
from sklearn.metrics import roc_auc_score

from leadscore.cli.main import main

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not BANK_FULL.exists(), reason=f"{BANK_FULL} not present")]

# Floor for the last-20%-of-rows holdout (strong drift: 6.7% -> 31.6% conversion). Reference figures
# on this split: logistic regression 0.684, CatBoost 0.678, default LightGBM 0.566. We measured 0.680
# (foundation) and 0.685 (with selection, ensemble and calibration); 0.66 leaves room for
# library-version noise while still failing a model that breaks under drift.
HOLDOUT_ROC_AUC_FLOOR = 0.66


def test_fit_and_score_bank_full_out_of_time(tmp_path, capsys):
    data = pd.read_csv(BANK_FULL)
    cut = int(len(data) * 0.8)
    data.iloc[:cut].to_csv(tmp_path / "train.csv", index=False)
    data.iloc[cut:].drop(columns=["y"]).to_csv(tmp_path / "new.csv", index=False)
    assert main(["fit", "--data", str(tmp_path / "train.csv"), "--target", "y", "--drop", "duration",
                 "--candidates", "logistic", "lightgbm", "-q", "--out", str(tmp_path / "model")]) == 0
    assert main(["score", "--model", str(tmp_path / "model"), "--input", str(tmp_path / "new.csv"),
                 "--output", str(tmp_path / "scores.csv"), "-q"]) == 0
    scores = pd.read_csv(tmp_path / "scores.csv")
    assert len(scores) == len(data) - cut
    auc = roc_auc_score(data["y"].iloc[cut:].eq("yes"), scores["probability"])
    print(f"bank-full last-20% holdout ROC-AUC: {auc:.4f}")
    assert auc >= HOLDOUT_ROC_AUC_FLOOR
    capsys.readouterr()
    assert main(["models", "card", str(tmp_path / "model")]) == 0
    card = capsys.readouterr().out
    meta = json.loads((tmp_path / "model/metadata.json").read_text())
    holdout = meta["holdout"]
    low, high = holdout["ci"]["roc_auc"]
    assert low < holdout["metrics"]["roc_auc"] < high
    assert f"| {holdout['metrics']['roc_auc']:.3f} | {low:.3f} to {high:.3f} |" in card
    assert "stratified random 20% validation" in card and "Validated on a random sample" in card
    assert "Dropped `duration`: dropped by request." in card
    assert "By `job`:" in card and "| blue-collar |" in card  # categorical columns with few values
    assert f"{len(data.iloc[:cut]):,} labelled leads" in card
