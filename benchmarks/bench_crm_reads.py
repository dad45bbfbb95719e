"""Time reading one lead (``CrmDatabase.read_tables([id])``) from a CRM database.

    python benchmarks/bench_crm_reads.py --n-leads 100000
    python benchmarks/bench_crm_reads.py --n-leads 1000000 --db postgresql+psycopg://postgres@127.0.0.1:5432/bench

Writes the demo CRM of ``--n-leads`` leads into ``--db`` (default: a SQLite file in a temporary folder;
existing CRM tables are replaced unless ``--keep`` reuses them), then reads random leads one at a time
and prints p50/p99/max in milliseconds, plus the time to build their feature rows (``build_snapshot``).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from leadscore.core.config import Params
from leadscore.data.crm import snapshot_table
from leadscore.data.crm_database import CrmDatabase
from leadscore.demo import generate_crm
from leadscore.demo.database import write_crm_database


def _percentiles(seconds: list[float]) -> str:
    ms = np.array(seconds) * 1e3
    return f"p50 {np.percentile(ms, 50):.2f} ms, p99 {np.percentile(ms, 99):.2f} ms, max {ms.max():.2f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Time one-lead reads from a CRM database.")
    parser.add_argument("--n-leads", type=int, default=100_000)
    parser.add_argument("--db", help="database URL or SQLite path (default: a temporary SQLite file)")
    parser.add_argument("--repeat", type=int, default=2000, help="leads read one at a time")
    parser.add_argument("--keep", action="store_true", help="reuse the CRM tables already in --db")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        url = args.db or str(Path(tmp) / "crm.db")
        if not args.keep:
            began = time.perf_counter()
            data = generate_crm(n_leads=args.n_leads, seed=7)
            counts = write_crm_database(data, url, if_exists="replace")
            print(f"wrote {counts} in {time.perf_counter() - began:.1f} s")
        rng = np.random.default_rng(0)
        ids = [f"L{i:07d}" for i in rng.integers(1, args.n_leads + 1, args.repeat)]
        params = Params()
        with CrmDatabase(url) as db:
            end = db.data_end()
            for lead_id in ids[:50]:  # warm the pool, caches and compiled statements
                db.read_tables([lead_id])
            reads, rows = [], []
            for lead_id in ids:
                began = time.perf_counter()
                tables = db.read_tables([lead_id])
                reads.append(time.perf_counter() - began)
                began = time.perf_counter()
                snapshot_table(tables, params, as_of=end)
                rows.append(time.perf_counter() - began)
        print(f"{db.engine.dialect.name}, {args.n_leads:,} leads, {args.repeat} one-lead reads")
        print(f"read_tables([id]): {_percentiles(reads)}")
        print(f"snapshot_table:    {_percentiles(rows)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
