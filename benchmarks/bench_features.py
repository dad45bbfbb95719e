"""Time the point-in-time features (``build_snapshot``) for one lead and for a whole batch.

    python benchmarks/bench_features.py --n-leads 1000000 --single 1000
    leadscore demo --n-leads 1000000 --out /tmp/demo1m
    python benchmarks/bench_features.py --crm /tmp/demo1m/raw --single 1000 --json

One lead: a lead row and only its own activities, as the API reads them by id (median and p99 over
``--single`` warm calls, cycling through leads with 10-60 activities). Batch: every lead with all the
activities in one call. Generating or reading the extract is timed apart; it is not part of the figure.
Peak memory is the whole process's (the data included), from ``getrusage``.

Not a test: prints the figures and the machine they were measured on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leadscore.data import snapshot
from leadscore.data.crm import load_crm
from leadscore.demo import DEMO_DEFAULTS, generate_crm

EXCLUDE = ("sales_status",)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _peak_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / (1024 * 1024 if platform.system() == "Darwin" else 1024)


def _load(args: argparse.Namespace) -> tuple[pd.DataFrame, pd.DataFrame, pd.Timestamp]:
    if args.crm is not None:
        tables = load_crm(args.crm)
        return tables["leads"], tables["activities"], snapshot.data_end(tables)
    data = generate_crm(n_leads=args.n_leads, seed=args.seed)
    return data.leads, data.activities, pd.Timestamp(data.data_end)


def _by_id_requests(leads: pd.DataFrame, activities: pd.DataFrame, count: int = 50
                    ) -> list[tuple[pd.DataFrame, pd.DataFrame]]:
    """Up to ``count`` (lead row, its activities) pairs with 10-60 activities, as read by id."""
    sizes = activities["lead_id"].value_counts()
    wanted = set(sizes[(sizes >= 10) & (sizes <= 60)].index[:count]) or set(sizes.index[:count])
    chosen = leads[leads["lead_id"].isin(wanted)]
    own = activities[activities["lead_id"].isin(wanted)]
    return [(chosen.iloc[[i]], own[own["lead_id"] == lead_id])
            for i, lead_id in enumerate(chosen["lead_id"])]


def time_single(leads: pd.DataFrame, activities: pd.DataFrame, end: pd.Timestamp, repeat: int,
                snapshot_days: float) -> dict[str, Any]:
    """Median and p99 milliseconds of one lead's features, warm (a few calls first are not counted)."""
    requests = _by_id_requests(leads, activities)
    if not requests or repeat <= 0:
        return {"single_repeat": 0}
    for lead, own in requests[:5]:
        snapshot.build_snapshot(lead, own, snapshot_days=snapshot_days, as_of=end, exclude=EXCLUDE)
    times = []
    for i in range(repeat):
        lead, own = requests[i % len(requests)]
        began = time.perf_counter()
        snapshot.build_snapshot(lead, own, snapshot_days=snapshot_days, as_of=end, exclude=EXCLUDE)
        times.append((time.perf_counter() - began) * 1000)
    return {"single_repeat": repeat, "single_median_ms": statistics.median(times),
            "single_p99_ms": float(np.percentile(times, 99)),
            "single_activities_mean": float(np.mean([len(own) for _, own in requests]))}


def time_batch(leads: pd.DataFrame, activities: pd.DataFrame, end: pd.Timestamp,
               snapshot_days: float) -> dict[str, Any]:
    """Wall seconds and leads per second of one ``build_snapshot`` call over every lead."""
    began = time.perf_counter()
    rows = snapshot.build_snapshot(leads, activities, snapshot_days=snapshot_days, as_of=end,
                                   exclude=EXCLUDE)
    wall = time.perf_counter() - began
    return {"batch_leads": len(rows), "batch_activities": len(activities), "batch_wall_s": wall,
            "batch_leads_per_s": len(rows) / wall if wall > 0 else float("nan")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Time build_snapshot for one lead and for a batch.")
    parser.add_argument("--n-leads", type=int, default=1_000_000,
                        help="leads to generate for the batch figure (ignored with --crm)")
    parser.add_argument("--crm", type=Path, default=None,
                        help="read leads/activities/outcomes from this folder (as `leadscore demo` "
                             "writes them, raw/) instead of generating them")
    parser.add_argument("--seed", type=int, default=DEMO_DEFAULTS["seed"])
    parser.add_argument("--single", type=int, default=1000, metavar="N",
                        help="repetitions for the one-lead figure (0: skip it)")
    parser.add_argument("--no-batch", action="store_true", help="only the one-lead figure")
    parser.add_argument("--snapshot-days", type=float, default=7.0)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args(argv)

    began = time.perf_counter()
    leads, activities, end = _load(args)
    result: dict[str, Any] = {
        "data": "read" if args.crm is not None else "generated", "data_s": time.perf_counter() - began,
        "cores": os.cpu_count(), "cpu": _cpu_model(), "python": platform.python_version(),
        "pandas": pd.__version__, "numpy": np.__version__}
    result.update(time_single(leads, activities, end, args.single, args.snapshot_days))
    if not args.no_batch:
        result["rss_before_batch_mb"] = _peak_mb()
        result.update(time_batch(leads, activities, end, args.snapshot_days))
    result["peak_rss_mb"] = _peak_mb()
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"machine: {result['cores']} cores, {result['cpu']}; Python {result['python']}, "
          f"pandas {result['pandas']}, numpy {result['numpy']}")
    print(f"data {result['data']} in {result['data_s']:.1f} s (not part of the figures)")
    if result.get("single_repeat"):
        print(f"one lead (by id, {result['single_activities_mean']:.0f} activities on average): "
              f"median {result['single_median_ms']:.2f} ms, p99 {result['single_p99_ms']:.2f} ms "
              f"over {result['single_repeat']} calls")
    if "batch_wall_s" in result:
        print(f"batch: {result['batch_leads']:,} leads, {result['batch_activities']:,} activities in "
              f"{result['batch_wall_s']:.1f} s ({result['batch_leads_per_s']:,.0f} leads/s)")
    print(f"peak memory (whole process, data included): {result['peak_rss_mb']:,.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
