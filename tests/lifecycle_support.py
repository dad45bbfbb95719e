"""A small demo CRM with fast training settings, and a deliberately bad model on its schema, for the
retraining tests (the CLI and the API's training jobs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from conftest import REPO

from leadscore.artifacts.bundle import save_bundle
from leadscore.artifacts.registry import Registry
from leadscore.cli.main import main
from leadscore.core.config import load_params
from leadscore.data.crm import load_crm, snapshot_table
from leadscore.training.build import snapshot_bundle


def make_crm_project(root: Path, n_leads: int = 4000) -> Path:
    """``root/data/raw`` (the demo generator, 20 months) and ``root/params.yaml`` with one quick
    candidate, no tuning, no ensemble, no segment models, and a gate that needs 100 leads."""
    assert main(["demo", "--out", str(root / "data"), "--n-leads", str(n_leads), "--months", "20"]) == 0
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["model_comparison"].update(candidates=["logistic"], cv_folds=3, time_budget_seconds=0,
                                      ensemble=False, calibration=["platt"])
    params["segments"]["min_positives"] = 10_000
    params["promotion"]["min_labeled"] = 100
    params["retrain"]["holdout_months"] = 2
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


def register_bad_model(project: Path, registry: Path) -> str:
    """A model trained on the CRM's rows with their labels shuffled (ROC-AUC about 0.5), active."""
    params = load_params(project / "params.yaml")
    snapshots = snapshot_table(load_crm(project / "data/raw"), params)
    closed = snapshots[snapshots["status"] == "closed"].reset_index(drop=True)
    shuffled = closed.assign(label=np.random.default_rng(0).permutation(closed["label"].to_numpy()))
    _, bundle = snapshot_bundle(shuffled.iloc[: len(shuffled) // 2], params)
    folder = save_bundle(bundle, project / "bad-model")
    return Registry(registry).register(folder, activate=True)
