"""``leadscore score --engine dask``: partitioned Parquet scored on a Dask cluster.

Each partition goes through the same steps as a chunk of the pandas engine (:mod:`leadscore.scoring.batch`):
column check, bad-row report, ``--since``/``--segment`` filters, :meth:`Scorer.score_frame`. With the same
``now`` the output is identical row for row. The output folder appears only when every partition is
written (written to a temporary folder, then renamed); a run record goes to ``<output>.run.json``.
Duplicate ids are detected within a partition only, and ``--incremental`` is not supported here.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from leadscore.core.exceptions import ConfigError, InputFileError
from leadscore.scoring.batch import BatchOptions, RunSummary, filter_rows, find_bad_rows, report_bad_rows
from leadscore.scoring.scorer import Scorer

N_WORKERS = 2  # the target machine has 2 cores: one single-threaded worker process per core


def _arrow_schema() -> Any:
    import pyarrow as pa

    text = pa.string()
    return pa.schema([("lead_id", text), ("probability", pa.float64()), ("score", pa.int16()),
                      ("tier", text), ("action", text), ("confidence", pa.float64()), ("reasons", text),
                      ("model_version", text), ("scored_at", pa.timestamp("us", tz="UTC"))])


def _score_partition(frame: pd.DataFrame, scorer: Scorer, options: BatchOptions,
                     cutoff: pd.Timestamp | None) -> pd.DataFrame:
    summary = RunSummary()
    frame = scorer.check(frame)
    bad = find_bad_rows(frame, scorer)
    if (bad != "").any():
        report_bad_rows(frame, bad, scorer, summary, options.on_bad_row)
        frame = frame.loc[bad == ""]
    todo, _, _ = filter_rows(frame, scorer, options, cutoff, set())
    scores = scorer.score_frame(todo, reasons=options.reasons, now=options.now)
    scores["lead_id"] = scores["lead_id"].astype(str)
    return scores.reset_index(drop=True)


def score_parquet_dask(scorer: Scorer, input_path: str | Path, output_path: str | Path,
                       options: BatchOptions | None = None, *, scheduler: str | None = None) -> RunSummary:
    """Score the Parquet file or folder ``input_path`` into the Parquet folder ``output_path``.

    Parameters
    ----------
    scheduler : a Dask scheduler address; None starts a LocalCluster of :data:`N_WORKERS` processes.
    """
    import dask.dataframe as dd
    from dask.distributed import Client, LocalCluster

    options = options or BatchOptions()
    if options.incremental:
        raise ConfigError("--incremental is supported by the pandas engine only")
    source, out = Path(input_path), Path(output_path)
    if not source.exists():
        raise InputFileError(f"--input {source}: no such file or folder")
    if out.suffix.lower() in (".csv", ".db", ".sqlite") or "://" in str(output_path):
        raise ConfigError(f"--engine dask writes a Parquet folder, got --output {output_path}")
    now = options.now or datetime.now(UTC)
    options = replace(options, now=now)
    cutoff = None if options.since_days is None else pd.Timestamp(now - timedelta(days=options.since_days))
    began = time.perf_counter()
    cluster = None
    if scheduler is None:
        cluster = LocalCluster(n_workers=N_WORKERS, threads_per_worker=1, processes=True,
                               dashboard_address=None)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        with Client(cluster or scheduler):
            frame = dd.read_parquet(source)
            meta = _score_partition(frame._meta, scorer, options, cutoff)
            scored = frame.map_partitions(_score_partition, scorer, options, cutoff, meta=meta)
            if tmp.exists():
                shutil.rmtree(tmp)
            scored.to_parquet(tmp, write_index=False, schema=_arrow_schema())
            rows_in = int(frame.map_partitions(len).compute().sum())
            rows_out = int(dd.read_parquet(tmp, columns=["lead_id"]).map_partitions(len).compute().sum())
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        os.replace(tmp, out)
    finally:
        if cluster is not None:
            cluster.close()
        if tmp.exists():
            shutil.rmtree(tmp)
    summary = RunSummary(status="done", rows_in=rows_in, rows_scored=rows_out,
                         seconds=round(time.perf_counter() - began, 3))
    # bad rows (logged by the workers with their ids) and filtered rows together:
    summary.rows_filtered = rows_in - rows_out
    record: dict[str, Any] = {**asdict(summary), "engine": "dask", "model_version": scorer.version,
                              "scheduler": scheduler or "LocalCluster", "source": str(source)}
    out.with_name(out.name + ".run.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    return summary
