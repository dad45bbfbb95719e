"""Batch scoring into files: whole outputs only, resume after a crash, bad rows, filters, incremental."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from conftest import make_flat_leads

from leadscore.core.exceptions import ConfigError, DataValidationError
from leadscore.scoring.batch import BatchOptions, FileSink, FileSource, FrameSource, find_bad_rows, run_batch
from leadscore.scoring.scorer import OUTPUT_COLUMNS, Scorer
from leadscore.training.fit import fit_table

NOW = datetime(2024, 3, 1, tzinfo=UTC)


class Boom(RuntimeError):
    pass


@pytest.fixture(scope="module")
def scorer() -> Scorer:
    result = fit_table(make_flat_leads(500, seed=3), target="converted", id_column="lead_id",
                       time_column="created", candidates=["logistic"])
    return Scorer(result.bundle, "20260101000000")


@pytest.fixture(scope="module")
def leads() -> pd.DataFrame:
    return make_flat_leads(250, seed=8).drop(columns=["converted"])


def options(**kw) -> BatchOptions:
    return BatchOptions(**{"chunk_size": 60, "now": NOW, "progress": False, **kw})


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_file_output_has_every_field_in_input_order(scorer, leads, tmp_path, suffix):
    out = tmp_path / f"scores{suffix}"
    summary = run_batch(scorer, FrameSource(leads), FileSink(out), options())
    scores = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    assert list(scores.columns) == [*OUTPUT_COLUMNS, "run_id"]
    assert scores["lead_id"].tolist() == leads["lead_id"].tolist()
    expected = scorer.score_frame(leads, now=NOW)
    np.testing.assert_allclose(scores["probability"], expected["probability"])
    assert scores["reasons"].tolist() == expected["reasons"].tolist()
    assert (pd.to_datetime(scores["scored_at"], utc=True) == pd.Timestamp(NOW)).all()
    assert (summary.rows_in, summary.rows_scored, summary.status) == (250, 250, "done")
    record = json.loads((tmp_path / f"scores{suffix}.run.json").read_text())
    assert record["status"] == "done" and record["rows_scored"] == 250
    assert not (tmp_path / f"scores{suffix}.partial").exists()


def test_crash_mid_batch_leaves_no_output_and_the_rerun_resumes(scorer, leads, tmp_path):
    out = tmp_path / "scores.parquet"
    out_clean = tmp_path / "clean.parquet"

    def crash_at_third(index, scores):
        if index == 2:
            raise Boom("power cut")

    with pytest.raises(Boom):
        run_batch(scorer, FrameSource(leads), FileSink(out), options(), on_chunk=crash_at_third)
    assert not out.exists()
    assert len(list((tmp_path / "scores.parquet.partial").glob("part-*.parquet"))) == 2
    assert json.loads((tmp_path / "scores.parquet.run.json").read_text())["status"] == "failed"

    scored_again = []
    summary = run_batch(scorer, FrameSource(leads), FileSink(out), options(),
                        on_chunk=lambda i, s: scored_again.append(i))
    assert summary.chunks_resumed == 2 and scored_again == [2, 3, 4]
    run_batch(scorer, FrameSource(leads), FileSink(out_clean), options())
    resumed, clean = pd.read_parquet(out), pd.read_parquet(out_clean)
    pd.testing.assert_frame_equal(resumed.drop(columns="run_id"), clean.drop(columns="run_id"))


def test_refresh_all_starts_over(scorer, leads, tmp_path):
    out = tmp_path / "s.csv"
    with pytest.raises(Boom):
        run_batch(scorer, FrameSource(leads), FileSink(out), options(),
                  on_chunk=lambda i, s: (_ for _ in ()).throw(Boom()) if i == 1 else None)
    seen = []
    summary = run_batch(scorer, FrameSource(leads), FileSink(out), options(refresh_all=True),
                        on_chunk=lambda i, s: seen.append(i))
    assert summary.chunks_resumed == 0 and seen == [0, 1, 2, 3, 4]
    assert len(pd.read_csv(out)) == 250


def test_bad_rows_are_reported_and_skipped_or_stop_the_run(scorer, leads, tmp_path):
    bad = leads.head(10).copy()
    bad["budget"] = bad["budget"].astype(object)
    bad.loc[bad.index[1], "budget"] = "lots"
    bad.loc[bad.index[2], "budget"] = float("inf")
    bad.loc[bad.index[3], "lead_id"] = None
    bad.loc[bad.index[4], "lead_id"] = bad.loc[bad.index[0], "lead_id"]
    bad.loc[bad.index[5], "budget"] = "-Infinity"
    reasons = find_bad_rows(bad, scorer)
    assert reasons.iloc[1] == ""  # text in a number field: scored as missing, logged, not dropped
    assert reasons.iloc[2] == "budget inf is not finite"
    assert reasons.iloc[3] == "lead_id is empty"
    assert reasons.iloc[4] == "lead_id appears more than once"
    assert reasons.iloc[5] == "budget '-Infinity' is not finite"
    assert (reasons.iloc[[0, 1, 6, 7, 8, 9]] == "").all()

    out = tmp_path / "s.parquet"
    summary = run_batch(scorer, FrameSource(bad), FileSink(out), options())
    assert summary.rows_bad == 4 and summary.rows_scored == 6
    assert {e["lead_id"] for e in summary.errors} == {str(bad["lead_id"].iloc[i]) for i in (2, 4, 5)} | {""}
    assert bad["lead_id"].iloc[1] in set(pd.read_parquet(out)["lead_id"])
    record = json.loads((tmp_path / "s.parquet.run.json").read_text())
    assert len(record["errors"]) == 4

    strict = tmp_path / "strict.parquet"
    with pytest.raises(DataValidationError, match=rf"bad row \(lead {bad['lead_id'].iloc[2]}\)"):
        run_batch(scorer, FrameSource(bad), FileSink(strict), options(on_bad_row="fail"))
    assert not strict.exists()


def test_duplicate_ids_across_chunks_are_bad_rows(scorer, leads, tmp_path):
    twice = pd.concat([leads.head(70), leads.head(5)], ignore_index=True)
    summary = run_batch(scorer, FrameSource(twice), FileSink(tmp_path / "s.csv"), options())
    assert summary.rows_bad == 5 and summary.rows_scored == 70


def test_since_and_segment_filter_the_leads(scorer, leads, tmp_path):
    out = tmp_path / "s.csv"
    summary = run_batch(scorer, FrameSource(leads), FileSink(out), options(since_days=20))
    created = pd.to_datetime(leads["created"]).dt.tz_localize("UTC")
    recent = leads.loc[created >= pd.Timestamp(NOW) - pd.Timedelta(days=20), "lead_id"]
    assert 0 < len(recent) < len(leads)
    assert pd.read_csv(out)["lead_id"].tolist() == recent.tolist()
    assert summary.rows_filtered == len(leads) - len(recent)

    run_batch(scorer, FrameSource(leads), FileSink(out), options(segment="WEST", segment_column="region"))
    west = leads.loc[leads["region"].str.strip().str.casefold() == "west", "lead_id"]
    assert pd.read_csv(out)["lead_id"].tolist() == west.tolist()
    with pytest.raises(DataValidationError, match="--segment"):
        run_batch(scorer, FrameSource(leads), FileSink(out), options(segment="x", segment_column="nope"))


def test_incremental_scores_only_new_leads_and_keeps_the_rest(scorer, leads, tmp_path):
    out = tmp_path / "s.parquet"
    run_batch(scorer, FrameSource(leads.head(100)), FileSink(out), options())
    seen = []
    summary = run_batch(scorer, FrameSource(leads), FileSink(out), options(incremental=True),
                        on_chunk=lambda i, s: seen.extend(s["lead_id"]))
    assert summary.rows_already_scored == 100 and summary.rows_scored == 150
    assert set(seen) == set(leads["lead_id"].iloc[100:])
    final = pd.read_parquet(out)
    assert sorted(final["lead_id"]) == sorted(leads["lead_id"]) and final["lead_id"].is_unique


def test_missing_required_column_fails_before_any_output(scorer, leads, tmp_path):
    out = tmp_path / "s.csv"
    with pytest.raises(DataValidationError, match="missing required column"):
        run_batch(scorer, FrameSource(leads.drop(columns=["email"])), FileSink(out), options())
    assert not out.exists()


def test_file_source_and_options_are_checked(scorer, leads, tmp_path):
    path = tmp_path / "in.parquet"
    leads.to_parquet(path)
    out = tmp_path / "o.csv"
    assert run_batch(scorer, FileSource(path), FileSink(out), options()).rows_scored == 250
    with pytest.raises(ConfigError, match="chunk-size"):
        run_batch(scorer, FileSource(path), FileSink(out), options(chunk_size=0))
    with pytest.raises(ConfigError, match=".csv or .parquet"):
        FileSink(tmp_path / "o.txt")


def test_a_run_that_fails_before_any_work_leaves_nothing_behind(scorer, leads, tmp_path):
    out = tmp_path / "s.csv"
    with pytest.raises(DataValidationError, match="missing required column"):
        run_batch(scorer, FrameSource(leads.drop(columns=["email"])), FileSink(out), options())
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no .partial, .run.json or .lock


def test_two_runs_cannot_write_the_same_output_at_once(scorer, leads, tmp_path):
    out = tmp_path / "s.csv"
    second: list[Exception] = []

    def in_the_middle(index, scores):  # while the first run holds the output, a second one starts
        if index == 0:
            with pytest.raises(ConfigError, match="another run is writing .*s.csv right now") as caught:
                run_batch(scorer, FrameSource(leads), FileSink(out), options())
            second.append(caught.value)

    summary = run_batch(scorer, FrameSource(leads), FileSink(out), options(), on_chunk=in_the_middle)
    assert second and summary.rows_scored == len(leads) and len(pd.read_csv(out)) == len(leads)
    assert not (tmp_path / "s.csv.lock").exists()  # released (and removed) when the run ended
    assert run_batch(scorer, FrameSource(leads), FileSink(out), options(refresh_all=True)).rows_scored == 250


def test_writing_scores_over_the_leads_table_is_refused(tmp_path, monkeypatch):
    from leadscore.scoring.sinks import check_not_input

    monkeypatch.chdir(tmp_path)
    same = [("leads.db", f"sqlite:///{tmp_path / 'leads.db'}"),
            (f"sqlite:///{tmp_path}/./leads.db", "leads.db"),
            ("postgresql+psycopg://u:pw@h/db", "postgresql+psycopg://u:pw@h/db")]
    for output, input_ in same:
        with pytest.raises(ConfigError, match="--table leads is the table the leads are read from") as caught:
            check_not_input(output, table="leads", input_=input_, query="leads")
        assert "pw" not in str(caught.value)
    check_not_input("leads.db", table="lead_scores", input_="leads.db", query="leads")  # another table
    check_not_input("other.db", table="leads", input_="leads.db", query="leads")  # another database
