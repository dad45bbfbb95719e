from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leadscore.core.exceptions import ConfigError, LeakageError, TargetError
from leadscore.data.schema import ColumnSpec, TableSchema, infer_schema
from leadscore.data.snapshot import attach_labels, build_snapshot
from leadscore.demo import generate_crm
from leadscore.training.leakage import LeakageSettings, LeakFinding, check_leakage, find_leaks, leakage_report

HONEST = ("signal", "weak", "region", "account")


def make_table(n: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Honest columns plus one planted example of every kind of leak."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(0, 1, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(-0.9 + 0.7 * signal)))).astype(int)
    created = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 300 * 24, n), unit="h")
    closed = (created + pd.to_timedelta(rng.integers(1, 60, n), unit="D")).strftime("%Y-%m-%d %H:%M")
    value = np.full(n, None, dtype=object)
    value[rng.random(n) < 0.5] = "N/A"                                  # placeholder or empty
    filled = np.where(y == 1, rng.random(n) < 0.95, rng.random(n) < 0.01)
    value[filled] = [f"{v:,.0f}" for v in rng.lognormal(8, 1, int(filled.sum()))]
    return pd.DataFrame({
        "lead_id": [f"L{i:05d}" for i in range(n)],
        "created_at": created.strftime("%Y-%m-%d %H:%M"),
        "signal": signal,
        "weak": rng.normal(0, 1, n) + 0.1 * y,
        "region": rng.choice(["North", "South", "East", "West"], n),
        "account": [f"acct-{k}" for k in rng.permutation(np.repeat(np.arange(n // 2), 2))],
        "status": np.where(rng.random(n) < 0.02, 1 - y, y).astype(object).astype(str),
        "contract_value": value,
        "closed_at": pd.Series(closed).where(rng.random(n) < 0.8),
        "dominator": y + rng.normal(0, 0.7, n),
        "notes_after_call": rng.choice(["won the deal", "lost"], n),
        "label": y,
    })


def table_schema(frame: pd.DataFrame, drop: tuple[str, ...] = ()) -> TableSchema:
    kinds = {"created_at": "datetime", "region": "categorical", "account": "categorical",
             "status": "categorical", "closed_at": "datetime"}
    columns = tuple(ColumnSpec(c, kinds.get(c, "numeric")) for c in frame.columns  # type: ignore[arg-type]
                    if c not in {"lead_id", "label", "notes_after_call", *drop})
    return TableSchema(columns, id_column="lead_id", time_column="created_at", target="label")


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return make_table()


@pytest.fixture(scope="module")
def findings(table: pd.DataFrame) -> list[LeakFinding]:
    return find_leaks(table, table["label"], table_schema(table),
                      declared=["notes_after_call", "label", "lead_id", "not_a_column"])


def _checks(findings: list[LeakFinding]) -> dict[str, set[str]]:
    result: dict[str, set[str]] = {}
    for finding in findings:
        result.setdefault(finding.column, set()).add(finding.check)
    return result


def test_every_planted_leak_is_flagged_by_its_check(findings):
    checks = _checks(findings)
    assert "single_feature_auc" in checks["status"]
    assert "missingness" in checks["contract_value"]       # "N/A" counts as missing
    assert "after_scoring_time" in checks["closed_at"]
    assert checks["dominator"] == {"dominates_others"}
    assert checks["notes_after_call"] == {"declared"}


def test_honest_target_id_and_time_columns_are_not_flagged(findings):
    flagged = {f.column for f in findings}
    assert not flagged & {*HONEST, "label", "lead_id", "created_at", "not_a_column"}


def test_findings_carry_statistics_and_plain_messages(findings):
    status = next(f for f in findings if f.column == "status" and f.check == "single_feature_auc")
    assert status.value > 0.95
    assert status.message.startswith("alone predicts the target with ROC-AUC 0.9")
    assert "(threshold 0.90)" in status.message
    later = next(f for f in findings if f.check == "after_scoring_time")
    assert later.value == pytest.approx(1.0)
    assert "created_at" in later.message
    assert np.isnan(next(f for f in findings if f.check == "declared").value)
    assert all("\n" not in f.message for f in findings)


def test_findings_follow_frame_column_order(findings, table):
    positions = [list(table.columns).index(f.column) for f in findings]
    assert positions == sorted(positions)


def test_strong_column_does_not_dominate_when_the_others_together_beat_it(table):
    rng = np.random.default_rng(1)
    peers = {f"peer{i}": table["label"] + rng.normal(0, 0.9, len(table)) for i in range(4)}
    frame = table[["lead_id", "created_at", *HONEST, "dominator", "label"]].assign(**peers)
    found = find_leaks(frame, frame["label"], table_schema(frame))
    assert found == []


def test_dominance_thresholds_come_from_settings(table):
    frame = table[["lead_id", "created_at", *HONEST, "dominator", "label"]]
    strict = LeakageSettings(dominance_min_auc=0.95)
    assert find_leaks(frame, frame["label"], table_schema(frame), settings=strict) == []
    lenient = LeakageSettings(single_feature_auc=0.8)
    found = find_leaks(frame, frame["label"], table_schema(frame), settings=lenient)
    assert _checks(found) == {"dominator": {"single_feature_auc"}}


def test_declared_names_are_case_sensitive_and_may_be_outside_the_schema(table):
    frame = table[["lead_id", "created_at", "signal", "region", "notes_after_call", "label"]]
    found = find_leaks(frame, frame["label"], table_schema(frame),
                       declared=["Notes_After_Call", "region", "created_at"])
    assert [(f.column, f.check) for f in found] == [("region", "declared")]


def test_subsampling_is_seeded_and_still_finds_the_leak(table):
    frame = table[["lead_id", "created_at", "signal", "status", "label"]]
    settings = LeakageSettings(max_rows=500, seed=3)
    first = find_leaks(frame, frame["label"], table_schema(frame), settings=settings)
    again = find_leaks(frame, frame["label"], table_schema(frame), settings=settings)
    assert first == again
    assert _checks(first) == {"status": {"single_feature_auc"}}


def test_check_leakage_names_every_column_on_one_line(findings):
    with pytest.raises(LeakageError) as info:
        check_leakage(findings)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("possible leakage, training stopped: ")
    for column in ("status", "contract_value", "closed_at", "dominator", "notes_after_call"):
        assert f"{column} (" in message
    assert "--allow-leaky" in message and "leakage.allow" in message


def test_check_leakage_respects_allow(findings):
    flagged = {f.column for f in findings}
    check_leakage(findings, allow=flagged)
    check_leakage([])
    with pytest.raises(LeakageError, match=r"training stopped: status \(alone predicts") as info:
        check_leakage(findings, allow=flagged - {"status"})
    assert "dominator" not in str(info.value)


def test_leakage_report_is_a_table(findings):
    report = leakage_report(findings)
    assert list(report.columns) == ["column", "check", "value", "message"]
    assert len(report) == len(findings)
    assert report.loc[report["check"] == "dominates_others", "column"].tolist() == ["dominator"]
    assert leakage_report([]).columns.tolist() == ["column", "check", "value", "message"]


def test_bad_labels_and_settings_raise(table):
    schema = table_schema(table)
    with pytest.raises(TargetError, match="expected one label per row"):
        find_leaks(table, table["label"].iloc[:10], schema)
    with pytest.raises(TargetError, match="expected both classes"):
        find_leaks(table, pd.Series(0, index=table.index), schema)
    with pytest.raises(TargetError, match="expected 0/1 labels"):
        find_leaks(table, table["label"] * 2, schema)
    with pytest.raises(ConfigError, match="expected an AUC between 0.5 and 1, got 1.5"):
        LeakageSettings(single_feature_auc=1.5)


def test_demo_planted_leak_is_found_without_declaring_it():
    data = generate_crm(n_leads=3000, seed=1)
    snapshot = build_snapshot(data.leads, data.activities, snapshot_days=7, exclude=())
    labelled = attach_labels(snapshot, data.outcomes, label_window_days=90, end=data.data_end)
    closed = labelled[labelled["status"] == "closed"].reset_index(drop=True)
    schema = infer_schema(closed, target="label", id_column="lead_id",
                          drop=["created_at", "snapshot_at", "status"])
    found = find_leaks(closed, closed["label"].astype(int), schema)
    flagged = {f.column for f in found}
    assert "sales_status" in flagged, leakage_report(found).to_string()
    others = flagged - {"sales_status"}
    assert len(others) <= 2, f"unexpected leak findings: {sorted(others)}"
