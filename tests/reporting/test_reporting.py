"""Report helpers: number formats, headers, the opening sentences, per-segment quality."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import REPO
from sklearn.metrics import roc_auc_score

from leadscore.artifacts.card import model_description
from leadscore.evaluation.breakdown import by_segment
from leadscore.reporting.notebook import header, num, pct, readable
from leadscore.reporting.summaries import comparison_summary, evaluation_summary

META = {"weights": {"logistic": 0.4165, "lightgbm": 0.3232, "catboost": 0.2603},
        "calibration": {"method": "platt"}, "rows": 34178,
        "training_window": ["2024-01-01T00:43:12", "2025-02-26T19:58:27"]}


def test_numbers_and_headers_people_read() -> None:
    assert pct(0.12345) == "12.3%" and pct(float("nan")) == "—"
    assert num(12345.0) == "12,345" and num(0.776871) == "0.777" and num(3.44191, 1) == "3.4"
    assert header("roc_auc") == "ROC-AUC" and header("cv_seconds") == "CV seconds"
    table = readable(pd.DataFrame({"roc_auc": [0.776871], "precision": [0.4026], "leads": [7798]},
                                  index=["champion"]), index="model")
    assert table.to_dict("records") == [{"ROC-AUC": "0.777", "Precision": "40.3%", "Leads": "7,798"}]
    assert table.index.name == "Model"


def test_model_description_names_members_by_weight() -> None:
    assert model_description(META) == ("an ensemble of logistic regression 42%, LightGBM 32% and "
                                       "CatBoost 26%, calibrated with Platt scaling")
    single = {"champion": "lightgbm", "calibration": {"method": "none"}}
    assert model_description(single) == "a LightGBM model"


def test_evaluation_summary_states_the_figures() -> None:
    metrics = {"test": {"n": 7798, "positive_rate": 0.121, "roc_auc": 0.7769, "top_decile_rate": 0.4167,
                        "top_decile_lift": 3.44, "recall": 0.361, "share_flagged": 0.109},
               "threshold": {"detail": "capacity: top 10% of leads (threshold 0.280)"}}
    lines = evaluation_summary(metrics, META, {"version": "20261101000000",
                                               "test_metrics": {"roc_auc": 0.7701, "top_decile_rate": 0.40}})
    text = "\n".join(lines)
    assert 3 <= len(lines) <= 5
    for figure in ("34,178 leads", "from 01 Jan 2024 to 26 Feb 2025", "7,798", "77.7%", "41.7%", "3.4x",
                   "36.1% of the converters", "0.770 -> 0.777 (+0.007)"):
        assert figure in text, figure
    assert "no earlier version" in "\n".join(evaluation_summary(metrics, META, None))


def test_comparison_summary_reads_numbers_beside_interval_columns() -> None:
    table = pd.DataFrame({"roc_auc": [0.77, 0.76, 0.70], "roc_auc_ci": ["[0.76, 0.78]"] * 3,
                          "top_decile_rate": [0.41, 0.40, 0.33]}, index=["champion", "logistic", "rules"])
    text = "\n".join(comparison_summary(table, META))
    assert "0.770 against 0.760 for the best single model (logistic)" in text
    assert "ROC-AUC 0.700 -> 0.770, top-10% conversion 33.0% -> 41.0%" in text


def test_by_segment_matches_a_direct_computation() -> None:
    rng = np.random.default_rng(3)
    prob = rng.random(600)
    y = (rng.random(600) < prob).astype(int)
    segment = np.where(rng.random(600) < 0.5, "a", np.where(rng.random(600) < 0.95, "b", "tiny"))
    table = by_segment(y, prob, segment, min_leads=40)
    assert set(table.index) == {"a", "b", "(other)"}
    mask = segment == "a"
    assert table.loc["a", "leads"] == mask.sum()
    assert table.loc["a", "conversion_rate"] == pytest.approx(y[mask].mean())
    assert table.loc["a", "roc_auc"] == pytest.approx(roc_auc_score(y[mask], prob[mask]))
    top = mask & (prob >= np.quantile(prob, 0.9))
    assert table.loc["a", "top_decile_rate"] == pytest.approx(y[top].mean())


def test_report_names_of_the_cli_are_the_reports_that_exist():
    from leadscore.cli.report import NAMES
    from leadscore.reporting.schedule import REPORTS

    assert set(NAMES) == set(REPORTS)
    for spec in REPORTS.values():
        assert (REPO / "notebooks" / spec.notebook).exists()
