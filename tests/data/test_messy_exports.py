"""Things real CRM exports contain: odd headers, id columns, Excel files, drifted headers, bad cells."""

from __future__ import annotations

import logging
import uuid

import numpy as np
import pandas as pd
import pytest

from leadscore.cli.main import main
from leadscore.data.schema import infer_schema


def kaggle_like(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    visits = rng.poisson(3, n).astype(float)
    visits[rng.random(n) < 0.05] = np.nan
    origin = rng.choice(["API", "Landing Page Submission", "Lead Add Form"], n)
    logit = -1.5 + 0.4 * np.nan_to_num(visits) - 1.0 * (origin == "API")
    return pd.DataFrame({
        "Prospect ID": [str(uuid.UUID(int=int(rng.integers(0, 2**62)))) for _ in range(n)],
        "Lead Number": np.arange(660_000, 660_000 - n, -1),
        "Lead Origin": origin,
        "Do Not Email": rng.choice(["No", "Yes"], n, p=[0.9, 0.1]),
        "TotalVisits": visits,
        "Revenue [USD]": [f"{v:,.2f}" for v in rng.lognormal(7, 1, n)],
        "Score: total, {raw}": rng.normal(0, 1, n).round(3),
        "Specialization": rng.choice(["Select", "Finance Management", "HR", "Marketing"], n),
        "Converted": (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int),
    })


def test_kaggle_like_export_fits_and_scores_from_excel(tmp_path):
    frame = kaggle_like()
    frame.to_excel(tmp_path / "leads.xlsx", index=False)
    assert main(["fit", "--data", str(tmp_path / "leads.xlsx"), "--target", "Converted",
                 "--id", "Prospect ID", "--candidates", "lightgbm", "--out", str(tmp_path / "m")]) == 0
    schema = infer_schema(frame, target="Converted", id_column="Prospect ID")
    assert "Lead Number" in schema.dropped and "identifier" in schema.dropped["Lead Number"]
    assert {c.name: c.kind for c in schema.columns}["Revenue [USD]"] == "numeric"
    # the scoring file's headers drifted in case and spacing
    new = frame.drop(columns=["Converted"]).rename(columns={"Lead Origin": "lead_origin",
                                                            "TotalVisits": "totalvisits"})
    new.to_csv(tmp_path / "new.csv", index=False)
    assert main(["score", "--model", str(tmp_path / "m"), "--input", str(tmp_path / "new.csv"),
                 "--output", str(tmp_path / "s.parquet"), "-q"]) == 0
    scores = pd.read_parquet(tmp_path / "s.parquet")
    assert scores["lead_id"].tolist() == frame["Prospect ID"].tolist()
    assert scores["probability"].std() > 0.01  # the renamed columns were really used


def test_text_in_a_numeric_column_is_reported_and_scored(tmp_path, caplog):
    frame = kaggle_like()
    frame.to_csv(tmp_path / "t.csv", index=False)
    assert main(["fit", "--data", str(tmp_path / "t.csv"), "--target", "Converted",
                 "--out", str(tmp_path / "m")]) == 0
    bad = frame.drop(columns=["Converted"]).astype({"TotalVisits": object})
    bad.loc[:2, "TotalVisits"] = "lots"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with caplog.at_level(logging.WARNING):
        assert main(["score", "--model", str(tmp_path / "m"), "--input", str(tmp_path / "bad.csv"),
                     "--output", str(tmp_path / "s.csv"), "-q"]) == 0
    assert "'TotalVisits': 3 value(s) are not numbers" in caplog.text
    assert len(pd.read_csv(tmp_path / "s.csv")) == len(bad)  # no row lost


@pytest.mark.parametrize("values", [["1.0", "0.0"], ["Converted", "Not Converted"], ["TRUE", "false"]])
def test_target_spellings_from_exports(tmp_path, values):
    frame = kaggle_like(200, seed=1)
    frame["Converted"] = np.where(frame["Converted"] == 1, values[0], values[1])
    frame.to_csv(tmp_path / "t.csv", index=False)
    assert main(["fit", "--data", str(tmp_path / "t.csv"), "--target", "Converted",
                 "--candidates", "logistic", "--out", str(tmp_path / "m")]) == 0
