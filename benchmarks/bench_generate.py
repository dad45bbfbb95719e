"""Time generate_crm + write_crm at scale.

    python benchmarks/bench_generate.py --n-leads 1000000 --out /tmp/bench1m

Not a test: prints wall time per step and rows per second (leads + activities + outcomes + truth).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from leadscore.demo import DEMO_DEFAULTS, generate_crm, write_crm


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Time generate_crm + write_crm.")
    parser.add_argument("--n-leads", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=DEMO_DEFAULTS["seed"])
    parser.add_argument("--start", default=DEMO_DEFAULTS["start"])
    parser.add_argument("--months", type=int, default=DEMO_DEFAULTS["months"])
    parser.add_argument("--out", type=Path, required=True, help="folder to write the extract into")
    args = parser.parse_args(argv)

    began = time.perf_counter()
    data = generate_crm(n_leads=args.n_leads, seed=args.seed, start=args.start, months=args.months)
    generated = time.perf_counter()
    paths = write_crm(data, args.out)
    written = time.perf_counter()

    rows = len(data.leads) + len(data.activities) + len(data.outcomes) + len(data.truth)
    total = written - began
    size_mb = sum(p.stat().st_size for p in paths) / 1e6
    print(f"leads {len(data.leads):,}  activities {len(data.activities):,}  "
          f"({len(data.activities) / len(data.leads):.1f} per lead)  files {size_mb:,.1f} MB")
    print(f"generate {generated - began:.1f} s  write {written - generated:.1f} s  "
          f"total wall {total:.1f} s")
    print(f"{rows / total:,.0f} rows/s overall  "
          f"({len(data.activities) / total:,.0f} activity rows/s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
