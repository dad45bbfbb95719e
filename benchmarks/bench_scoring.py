"""Batch and single-lead scoring speed with the registered demo champion.

    python benchmarks/bench_scoring.py                       # 1M leads, all figures
    python benchmarks/bench_scoring.py --n-leads 200000 --skip-dask --skip-postgres

Steps (each printed with its wall time):

1. Generate ``--n-leads`` demo leads and build their point-in-time snapshot rows (the flat input the
   scorer reads), written once to ``WORKDIR/leads.parquet`` (and as 8 partitions for Dask).
2. Parquet -> Parquet with the pandas engine (:func:`leadscore.scoring.batch.run_batch`): probability
   only, then
   with 3 exact reasons on the first ``--reasons-rows`` leads (all of them if you pass ``--n-leads``).
3. The same with ``--engine dask`` on a LocalCluster of 2 single-threaded worker processes.
4. One lead at a time through :meth:`Scorer.score_lead` (the public function the API calls): p50/p99.
5. PostgreSQL -> PostgreSQL on ``--pg-rows`` leads (127.0.0.1:5432, database ``test``).

Not a test: it prints figures. Rows/s counts leads end to end (read, features, model, reasons, write).
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from leadscore import snapshot  # noqa: E402
from leadscore.core.config import load_params  # noqa: E402
from leadscore.demo import generate_crm  # noqa: E402
from leadscore.scoring.batch import BatchOptions, FileSink, FileSource, SqlSource, run_batch  # noqa: E402
from leadscore.scoring.scorer import Scorer  # noqa: E402

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def build_input(n_leads: int, workdir: Path, params_path: str) -> Path:
    path = workdir / "leads.parquet"
    if path.exists() and len(pd.read_parquet(path, columns=["lead_id"])) == n_leads:
        print(f"input: reusing {path}")
        return path
    params = load_params(params_path)
    began = time.perf_counter()
    crm = generate_crm(n_leads=n_leads, seed=7)
    generated = time.perf_counter()
    end = snapshot.data_end({"leads": crm.leads, "activities": crm.activities, "outcomes": crm.outcomes})
    snap = snapshot.build_snapshot(crm.leads, crm.activities, snapshot_days=params.snapshot.snapshot_days,
                                   as_of=end, placeholders=params.features.placeholders,
                                   exclude=params.features.exclude)
    built = time.perf_counter()
    snap.to_parquet(path, index=False)
    parts = workdir / "leads_parts"
    shutil.rmtree(parts, ignore_errors=True)
    parts.mkdir()
    for i, chunk in enumerate(np.array_split(np.arange(len(snap)), 8)):
        snap.iloc[chunk].to_parquet(parts / f"part-{i}.parquet", index=False)
    print(f"input: {n_leads:,} leads ({len(crm.activities):,} activities) generated in "
          f"{generated - began:.1f} s; snapshots ({snap.shape[1]} columns) built in "
          f"{built - generated:.1f} s "
          f"({n_leads / (built - generated):,.0f} leads/s)")
    return path


def pandas_engine(scorer: Scorer, path: Path, workdir: Path, reasons: int, rows: int | None) -> None:
    source = path
    if rows is not None:
        source = workdir / f"leads_{rows}.parquet"
        if not source.exists():
            pd.read_parquet(path).head(rows).to_parquet(source, index=False)
    out = workdir / f"scores_pandas_{reasons}.parquet"
    out.unlink(missing_ok=True)
    began = time.perf_counter()
    summary = run_batch(scorer, FileSource(source), FileSink(out),
                        BatchOptions(reasons=reasons, chunk_size=100_000, progress=False, refresh_all=True))
    wall = time.perf_counter() - began
    print(f"pandas  Parquet->Parquet  reasons={reasons}: {summary.rows_scored:,} leads in {wall:.1f} s = "
          f"{summary.rows_scored / wall:,.0f} leads/s")


def dask_engine(scorer: Scorer, workdir: Path, reasons: int) -> None:
    from leadscore.scoring.dask_engine import score_parquet_dask

    out = workdir / f"scores_dask_{reasons}"
    began = time.perf_counter()
    summary = score_parquet_dask(scorer, workdir / "leads_parts", out,
                                 BatchOptions(reasons=reasons, progress=False))
    wall = time.perf_counter() - began
    print(f"dask    Parquet->Parquet  reasons={reasons}: {summary.rows_scored:,} leads in {wall:.1f} s = "
          f"{summary.rows_scored / wall:,.0f} leads/s (LocalCluster start-up included)")


def single_lead(scorer: Scorer, path: Path, calls: int) -> None:
    leads = pd.read_parquet(path).head(calls)
    records = leads.to_dict("records")
    for record in records[:50]:  # warm-up
        scorer.score_lead(record)
    for reasons in (0, 3):
        times = np.empty(len(records))
        for i, record in enumerate(records):
            began = time.perf_counter()
            scorer.score_lead(record, reasons=reasons)
            times[i] = time.perf_counter() - began
        p50, p99 = np.percentile(times, [50, 99]) * 1000
        print(f"single lead (score_lead)   reasons={reasons}: p50 {p50:.2f} ms  p99 {p99:.2f} ms  "
              f"over {len(records):,} calls")


def postgres(scorer: Scorer, path: Path, rows: int) -> None:
    import sqlalchemy as sa

    from leadscore.scoring.sql import SqlScoreSink

    engine = sa.create_engine(PG_URL)
    name = f"bench_leads_{uuid.uuid4().hex[:8]}"
    frame = pd.read_parquet(path).head(rows)
    began = time.perf_counter()
    frame.to_sql(name, engine, index=False, chunksize=1_000, method="multi")  # < 65535 parameters
    print(f"postgres: loaded {len(frame):,} leads into {name} in {time.perf_counter() - began:.1f} s")
    try:
        for reasons in (0, 3):
            table = f"{name}_scores_{reasons}"
            began = time.perf_counter()
            summary = run_batch(scorer, SqlSource(PG_URL, name, "lead_id"), SqlScoreSink(PG_URL, table),
                                BatchOptions(reasons=reasons, chunk_size=20_000, progress=False,
                                             now=datetime.now(UTC)))
            wall = time.perf_counter() - began
            print(f"postgres->postgres reasons={reasons}: {summary.rows_scored:,} leads in {wall:.1f} s = "
                  f"{summary.rows_scored / wall:,.0f} leads/s (upsert, one transaction per 20k chunk)")
    finally:
        with engine.begin() as conn:
            for suffix in ("", "_scores_0", "_scores_0_runs", "_scores_0_chunks", "_scores_3",
                           "_scores_3_runs", "_scores_3_chunks"):
                conn.execute(sa.text(f'DROP TABLE IF EXISTS "{name}{suffix}"'))
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-leads", type=int, default=1_000_000)
    parser.add_argument("--reasons-rows", type=int, default=200_000,
                        help="leads scored with 3 reasons by the pandas engine (default: 200000)")
    parser.add_argument("--single-calls", type=int, default=3000)
    parser.add_argument("--pg-rows", type=int, default=100_000)
    parser.add_argument("--registry", default="registry")
    parser.add_argument("--model", help="registry version or model folder (default: the active version)")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/leadscore_bench"))
    parser.add_argument("--skip-dask", action="store_true")
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args(argv)

    args.workdir.mkdir(parents=True, exist_ok=True)
    scorer = Scorer.load(args.model, registry=args.registry)
    members = getattr(scorer.bundle.model, "weights", {"model": 1.0})
    print(f"model {scorer.version}: {scorer.bundle.metadata.get('model', '?')} {members}; "
          f"{os.cpu_count()} cores")
    path = build_input(args.n_leads, args.workdir, args.params)
    pandas_engine(scorer, path, args.workdir, reasons=0, rows=None)
    pandas_engine(scorer, path, args.workdir, reasons=3,
                  rows=None if args.reasons_rows >= args.n_leads else args.reasons_rows)
    if not args.skip_dask:
        dask_engine(scorer, args.workdir, reasons=0)
        dask_engine(scorer, args.workdir, reasons=3)
    single_lead(scorer, path, args.single_calls)
    if not args.skip_postgres:
        postgres(scorer, path, args.pg_rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
