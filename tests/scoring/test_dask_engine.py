"""The Dask engine gives the pandas engine's output row for row, on a real LocalCluster."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest
from conftest import make_flat_leads

from leadscore.core.exceptions import ConfigError, DataValidationError
from leadscore.scoring.batch import BatchOptions, FileSink, FrameSource, run_batch
from leadscore.scoring.dask_engine import score_parquet_dask
from leadscore.scoring.scorer import Scorer
from leadscore.training.fit import fit_table

NOW = datetime(2024, 3, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def scorer() -> Scorer:
    result = fit_table(make_flat_leads(500, seed=4), target="converted", id_column="lead_id",
                       time_column="created", candidates=["logistic", "lightgbm"])
    return Scorer(result.bundle, "20260101000000")


def test_dask_equals_pandas_row_for_row(scorer, tmp_path):
    leads = make_flat_leads(900, seed=5).drop(columns=["converted"])
    leads["budget"] = leads["budget"].astype(object)
    leads.loc[10, "budget"] = "inf"  # a bad row: skipped by both engines
    folder = tmp_path / "leads"
    folder.mkdir()
    for i, start in enumerate(range(0, len(leads), 250)):  # partitioned Parquet, 4 files
        leads.iloc[start:start + 250].to_parquet(folder / f"part-{i}.parquet", index=False)
    opts = BatchOptions(reasons=3, now=NOW, progress=False, since_days=40)
    summary = score_parquet_dask(scorer, folder, tmp_path / "dask_out", opts)
    run_batch(scorer, FrameSource(leads), FileSink(tmp_path / "pandas.parquet"), opts)
    by_dask = pd.read_parquet(tmp_path / "dask_out").reset_index(drop=True)
    by_pandas = pd.read_parquet(tmp_path / "pandas.parquet").drop(columns="run_id")
    assert 0 < len(by_pandas) < len(leads) - 1
    pd.testing.assert_frame_equal(by_dask, by_pandas, check_dtype=False)
    assert summary.rows_in == 900 and summary.rows_scored == len(by_pandas)
    assert (tmp_path / "dask_out.run.json").exists()


def test_dask_engine_errors(scorer, tmp_path):
    with pytest.raises(ConfigError, match="incremental"):
        score_parquet_dask(scorer, tmp_path, tmp_path / "o", BatchOptions(incremental=True))
    with pytest.raises(ConfigError, match="Parquet folder"):
        score_parquet_dask(scorer, tmp_path, tmp_path / "o.csv", BatchOptions())
    leads = make_flat_leads(50, seed=6).drop(columns=["converted", "email"])
    leads.to_parquet(tmp_path / "in.parquet")
    with pytest.raises(DataValidationError, match="missing required column"):
        score_parquet_dask(scorer, tmp_path / "in.parquet", tmp_path / "out", BatchOptions(progress=False))
    assert not (tmp_path / "out").exists()
