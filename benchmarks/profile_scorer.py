"""Scoring speed of one model on real rows: single lead latency and batch throughput, fast vs general path.

    python benchmarks/profile_scorer.py                                # the demo champion, fast path
    python benchmarks/profile_scorer.py --general                      # the same through the general path
    python benchmarks/profile_scorer.py --model artifacts/models/champion --rows artifacts/split/test.parquet

Prints, each repeated ``--repeat`` times (the machine may be shared: look at the spread; single-lead
latency is also given as the calling thread's CPU time, which other processes do not inflate):

1. the first call (compiling the model into the fast path, checked against the general path);
2. one lead at a time through ``Scorer.score_lead(lead, reasons=3)``: p50/p99 over ``--leads`` calls;
3. ``Scorer.score_frame`` on ``--batch-rows`` rows (the input rows repeated) with ``reasons=0`` and 3;
4. Parquet -> Parquet with :func:`leadscore.scoring.batch.run_batch` (read, check, bad rows, score, write).

Not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from leadscore.scoring.batch import BatchOptions, FileSink, FileSource, run_batch  # noqa: E402
from leadscore.scoring.scorer import Scorer  # noqa: E402


def _rate(rows: int, seconds: list[float]) -> str:
    rates = sorted(rows / s for s in seconds)
    return f"{statistics.median(rates):,.0f} rows/s (median; best {rates[-1]:,.0f}, worst {rates[0]:,.0f})"


def single_leads(scorer: Scorer, leads: list[dict[str, object]], repeat: int) -> None:
    for attempt in range(repeat):
        wall, cpu = [], []
        for lead in leads:
            began, began_cpu = time.perf_counter(), time.thread_time()
            scorer.score_lead(lead, reasons=3)
            wall.append(time.perf_counter() - began)
            cpu.append(time.thread_time() - began_cpu)
        ms, cpu_ms = np.array(wall) * 1e3, np.array(cpu) * 1e3
        print(f"  score_lead(reasons=3) run {attempt + 1}: wall p50 {np.percentile(ms, 50):.3f} ms, "
              f"p99 {np.percentile(ms, 99):.3f} ms, max {ms.max():.2f} ms; this thread's CPU time p50 "
              f"{np.percentile(cpu_ms, 50):.3f} ms, p99 {np.percentile(cpu_ms, 99):.3f} ms "
              f"({len(ms):,} calls)")


def frames(scorer: Scorer, batch: pd.DataFrame, repeat: int) -> None:
    for reasons in (0, 3):
        seconds = []
        for _ in range(repeat):
            began = time.perf_counter()
            scorer.score_frame(batch, reasons=reasons)
            seconds.append(time.perf_counter() - began)
        print(f"  score_frame(reasons={reasons}) on {len(batch):,} rows: {_rate(len(batch), seconds)}")


def parquet(scorer: Scorer, batch: pd.DataFrame, repeat: int, chunk: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "leads.parquet"
        batch.to_parquet(source, index=False)
        for reasons in (0, 3):
            seconds = []
            for attempt in range(repeat):
                out = Path(folder) / f"scores_{reasons}_{attempt}.parquet"
                began = time.perf_counter()
                run_batch(scorer, FileSource(source), FileSink(out),
                          BatchOptions(reasons=reasons, chunk_size=chunk, progress=False, refresh_all=True))
                seconds.append(time.perf_counter() - began)
            print(f"  Parquet -> Parquet (run_batch, reasons={reasons}, chunks of {chunk:,}) on "
                  f"{len(batch):,} rows: {_rate(len(batch), seconds)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="artifacts/models/champion",
                        help="model folder or registry version")
    parser.add_argument("--rows", default="artifacts/split/test.parquet", help="raw lead rows (Parquet)")
    parser.add_argument("--general", action="store_true", help="score through the general path only")
    parser.add_argument("--leads", type=int, default=2000, help="single-lead calls per run")
    parser.add_argument("--batch-rows", type=int, default=100_000, help="rows per batch measurement")
    parser.add_argument("--chunk-size", type=int, default=50_000, help="run_batch chunk size")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-parquet", action="store_true")
    args = parser.parse_args()

    rows = pd.read_parquet(args.rows)
    rows = rows.drop(columns=[c for c in ("label", "y", "converted") if c in rows.columns])
    scorer = Scorer.load(args.model)
    scorer.fast_path = not args.general
    print(f"model {args.model} ({scorer.bundle.model!r}), {len(rows):,} input rows, "
          f"{'general' if args.general else 'fast'} path, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f}")
    began = time.perf_counter()
    scorer.score_frame(rows.head(200), reasons=3)
    compiled = getattr(scorer, "compiled", None)  # absent before the fast path existed
    print(f"  first call (compile + check): {time.perf_counter() - began:.2f} s; "
          f"compiled: {compiled is not None and compiled() is not None}")
    leads = rows.sample(min(args.leads, len(rows)), random_state=0).to_dict("records")
    single_leads(scorer, leads if not args.general else leads[:200], args.repeat)
    reps = -(-args.batch_rows // len(rows))
    batch = pd.concat([rows] * reps, ignore_index=True).head(args.batch_rows)
    if "lead_id" in batch.columns:
        batch["lead_id"] = [f"B{i:08d}" for i in range(len(batch))]
    frames(scorer, batch, args.repeat)
    if not args.skip_parquet:
        parquet(scorer, batch, args.repeat, args.chunk_size)


if __name__ == "__main__":
    main()
