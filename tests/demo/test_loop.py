"""The learning loop replayed on a drifting demo world (`leadscore monitor replay-loop`): the drift alert
starts a cycle, a normal challenger passes the gate and beats the stale model on the same matured leads, a
weakened one is rejected; the generator's `new_source_months` leaves the default world as it was.

The fast replays use a 24-month world whose social_ads source arrives for its last 12 months, and a cooldown
so long that the walk checks the triggers once, about five months after the drift: one cycle per replay.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import REPO

from leadscore.artifacts.registry import Registry
from leadscore.cli.main import main
from leadscore.core.config import load_params
from leadscore.core.exceptions import ConfigError
from leadscore.core.jsonsafe import dumps
from leadscore.data.crm import snapshot_table
from leadscore.demo.generator import generate_crm
from leadscore.demo.latent import NEW_SOURCE, NEW_SOURCE_MONTHS
from leadscore.demo.loop import (
    ACTIVITY_FEATURES,
    LoopSettings,
    labelled_at,
    loop_params,
    replay_loop,
    tables_at,
)

FAST = LoopSettings(n_leads=30_000, months=24, new_source_months=12, step_days=28, cooldown_days=240)
FAST_ARGS = ["--n-leads", "30000", "--months", "24", "--new-source-months", "12", "--step-days", "28",
             "--cooldown-days", "240"]


@pytest.fixture(scope="module")
def params():
    return loop_params(load_params(REPO / "params.yaml"), FAST)


@pytest.fixture(scope="module")
def normal(tmp_path_factory, params):
    root = tmp_path_factory.mktemp("loop") / "registry"
    return replay_loop(Registry(root), params, FAST), root


def test_the_drift_alert_starts_a_cycle_after_the_drift(normal):
    result, _ = normal
    assert result.drift_from == "2025-01-01" and result.walk == ["2024-10-01", "2026-01-01"]
    [check] = result.checks                          # cooldown 240 days: the one check of the walk
    assert check.at == "2025-06-10" and check.champion == result.initial
    assert [t.name for t in check.cycle.triggers if t.fired] == ["alert"]   # not the yearly schedule
    source = next(a for a in check.alerts if a.startswith("drift source:"))
    assert f"never seen in training ({NEW_SOURCE})" in source
    # the stale model still ranks about as well as on its held-out months: no realized-performance alert
    assert check.realized is not None and check.realized.startswith("ok: realized ROC-AUC")


def test_the_retrained_challenger_is_promoted_and_beats_the_stale_model(normal):
    result, root = normal
    cycle = result.checks[0].cycle
    assert cycle.ran and (cycle.decision, cycle.action) == ("promote", "promoted")
    assert cycle.version == "20250610000000"         # registered on the world's clock
    figures = cycle.figures
    assert figures["leads"] == cycle.data["holdout_rows"] > 2500
    assert figures["challenger_roc_auc"] - figures["champion_roc_auc"] > 0.02 and figures["p_better"] < 1e-4
    assert figures["challenger_brier"] < figures["champion_brier"]
    assert cycle.data["trained_on"][1] < cycle.data["held_back"][0]   # the gate's months: never trained on
    registry = Registry(root)
    assert registry.active_version() == result.active == cycle.version
    # its held-out quality is recorded: the same held-back leads and ROC-AUC as the gate's
    held = registry.show(cycle.version)["holdout"]
    assert held["rows"] == figures["leads"] and "never seen in training" in held["where"]
    assert abs(held["metrics"]["roc_auc"] - figures["challenger_roc_auc"]) < 1e-4
    tested = registry.show(cycle.version)["test_metrics"]
    assert {"roc_auc", "precision", "recall", "f1", "accuracy"} <= set(tested)
    retrain = [e for e in registry.events() if e["event"] == "retrain"]
    assert [(e["actor"], e["decision"]) for e in retrain] == [("loop-replay", "promote")]
    # on the same matured leads, scored after the promotion: the promoted model ranks them better
    after = result.after
    assert after["since"] == "2025-06-10" and after["leads"] > 4000
    assert after["active_roc_auc"] - after["stale_roc_auc"] > 0.01 and after["p_better"] < 0.01
    later = [m for m in result.months if m.month > after["since"]]
    assert len(later) >= 3 and all(m.versions == [cycle.version] for m in later)
    assert np.mean([m.active_roc_auc - m.stale_roc_auc for m in later]) > 0.01
    assert all(m.new_source_share > 0.1 for m in later)
    earlier = [m for m in result.months if m.month < "2025-06-01"]
    assert earlier and all(m.active_roc_auc == m.stale_roc_auc and m.versions == [result.initial]
                           for m in earlier)
    assert json.loads(dumps(result.to_dict()))["checks"][0]["decision"] == "promote"


def test_a_weakened_challenger_is_rejected_and_the_stale_model_stays(tmp_path, capsys):
    root = tmp_path / "registry"
    assert main(["monitor", "replay-loop", *FAST_ARGS, "--weaken", "--out", str(root), "-q",
                 "--params", str(REPO / "params.yaml")]) == 0
    out = capsys.readouterr().out
    assert "challengers: WEAKENED" in out and "REJECT: rejected" in out
    assert "cycles: 1 (1 rejected); active at the end: 20241001000000 (the initial model)" in out
    registry = Registry(root)
    [gate] = [e for e in registry.events() if e["event"] == "gate"]
    assert gate["decision"] == "reject" and gate["figures"]["p_worse"] < 1e-4
    assert gate["figures"]["champion_roc_auc"] - gate["figures"]["challenger_roc_auc"] > 0.03
    assert registry.active_version() == gate["champion"] == "20241001000000"
    assert registry.challenger_version() is None
    weak = registry.load(gate["challenger"]).schema.feature_names
    assert not set(weak) & set(ACTIVITY_FEATURES)
    assert set(ACTIVITY_FEATURES) <= set(registry.load(gate["champion"]).schema.feature_names)


def test_rows_known_on_a_day_use_nothing_from_after_it(params):
    data = generate_crm(n_leads=3000, seed=3, months=12)
    tables = {"leads": data.leads, "activities": data.activities, "outcomes": data.outcomes}
    when = pd.Timestamp("2024-09-01")
    known = tables_at(tables, when)
    assert known["leads"]["created_at"].max() <= when < data.leads["created_at"].max()
    assert known["activities"]["timestamp"].max() < when
    assert known["outcomes"]["converted_at"].max() <= when
    assert (known["outcomes"]["converted"] == 1).sum() < (data.outcomes["converted"] == 1).sum()
    labelled = labelled_at(tables, params, when)
    assert len(labelled) > 500 and (labelled["snapshot_at"] + pd.Timedelta(days=90) <= when).all()
    # a closed label and the features at the snapshot never change afterwards
    full = snapshot_table(tables, params).set_index("lead_id").loc[labelled["lead_id"]]
    assert (full["label"].to_numpy() == labelled["label"].to_numpy()).all()
    assert np.allclose(full["page_views"], labelled["page_views"])


def test_the_replay_needs_a_new_registry_and_room_before_the_drift(normal, params, tmp_path):
    _, root = normal
    with pytest.raises(ConfigError, match="expected a new registry"):
        replay_loop(Registry(root), params, FAST)
    with pytest.raises(ConfigError, match="too soon after the world's start"):
        replay_loop(Registry(tmp_path), params, LoopSettings(n_leads=500, months=10, new_source_months=6))
    quick = loop_params(load_params(REPO / "params.yaml"), FAST)
    assert quick.candidates == ("lightgbm",) and not quick.comparison.ensemble
    assert quick.retrain.max_age_days == 365 and quick.retrain.min_new_labels == 15_000


def test_new_source_months_keeps_the_default_world_and_moves_the_drift():
    default = generate_crm(n_leads=3000, seed=5, months=8)
    same = generate_crm(n_leads=3000, seed=5, months=8, new_source_months=NEW_SOURCE_MONTHS)
    for name in ("leads", "activities", "outcomes", "truth"):
        pd.testing.assert_frame_equal(getattr(default, name), getattr(same, name))
    longer = generate_crm(n_leads=3000, seed=5, months=8, new_source_months=6)

    def first_new(data):
        return data.leads.loc[data.leads["source"] == NEW_SOURCE, "created_at"].min()

    for data, months in ((default, NEW_SOURCE_MONTHS), (longer, 6)):
        new_from = data.data_end - pd.DateOffset(months=months)
        assert new_from <= first_new(data) < new_from + pd.Timedelta(days=2)
    assert len(generate_crm(n_leads=100, seed=1, months=2).leads) == 100   # the default still fits 2 months


@pytest.mark.parametrize("value", [0, 9, True, 2.5, "4"])
def test_new_source_months_out_of_range(value):
    with pytest.raises(ConfigError, match="new_source_months: expected an integer 1 to 8, got"):
        generate_crm(n_leads=100, seed=1, months=8, new_source_months=value)


@pytest.mark.slow
def test_the_default_replays(tmp_path, capsys):
    """`leadscore monitor replay-loop` with its defaults, both ways (about two minutes each)."""
    docs = {}
    for mode in ("normal", "weaken"):
        assert main(["monitor", "replay-loop", "--json", "--params", str(REPO / "params.yaml"),
                     *(["--weaken"] if mode == "weaken" else [])]) == 0
        docs[mode] = json.loads(capsys.readouterr().out)
    for doc in docs.values():
        before = [c for c in doc["checks"] if c["at"] < doc["drift_from"]]
        assert before and not any(t["fired"] for c in before for t in c["triggers"])  # quiet till the drift
        first = next(c for c in doc["checks"] if c["ran"])
        assert first["at"] > doc["drift_from"] and any("social_ads" in a for a in first["alerts"])
    normal, weak = docs["normal"], docs["weaken"]
    assert any(c["decision"] == "promote" for c in normal["checks"]) and normal["active"] != normal["initial"]
    after = normal["after"]
    assert after["active_roc_auc"] > after["stale_roc_auc"] and after["p_better"] < 0.01
    assert {c["decision"] for c in weak["checks"] if c["ran"]} == {"reject"}
    assert weak["active"] == weak["initial"]
