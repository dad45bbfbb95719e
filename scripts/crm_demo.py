"""Scores where sales works, on the demo CRM: one command (`make crm-demo`) shows it end to end.

1. the demo CRM is written into a SQLite database (`leadscore demo --db`),
2. `leadscore sync --follow` scores every open lead and writes the scores onto the CRM (table
   lead_scores), then keeps following the database,
3. one new activity is inserted for a young lead (a quote request, as a CRM would record it),
4. the lead's new score and reasons appear in lead_scores, and the script prints how long that took.

Each step prints the command it runs, so you can repeat them by hand. The model is the pipeline's
exported champion (`make run` first) or any model folder / registry version given with --model.

    python scripts/crm_demo.py                          # after make run: artifacts/export
    python scripts/crm_demo.py --model artifacts/export --n-leads 5000 --keep
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

LEADSCORE = [sys.executable, "-m", "leadscore.cli"]


def run(argv: list[str]) -> str:
    print(f"$ leadscore {shlex.join(argv)}", flush=True)
    proc = subprocess.run([*LEADSCORE, *argv], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    print("  " + "\n  ".join(proc.stdout.strip().splitlines()), flush=True)
    return proc.stdout


def score_of(db: Path, lead: str) -> tuple[int, str, str, list[str]] | None:
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT score, tier, scored_at, reasons FROM lead_scores WHERE lead_id = ?",
                           (lead,)).fetchone()
    if row is None:
        return None
    reasons = json.loads(row[3])
    return int(row[0]), str(row[1]), str(row[2]), [r["text"] for r in reasons.get("positive", [])]


def young_open_lead(db: Path, as_of: str) -> str:
    """A lead created in the last few days before ``as_of`` (its features still change), scored."""
    with sqlite3.connect(db) as conn:
        row = conn.execute(
            "SELECT l.lead_id FROM leads l JOIN lead_scores s ON s.lead_id = l.lead_id "
            "JOIN outcomes o ON o.lead_id = l.lead_id WHERE l.created_at > datetime(?, '-5 days') "
            "AND o.converted = 0 ORDER BY s.score ASC LIMIT 1", (as_of,)).fetchone()
    if row is None:
        raise SystemExit("no young open lead in the demo CRM: try a larger --n-leads")
    return str(row[0])


def insert_quote_request(db: Path, lead: str, as_of: str) -> float:
    """A quote request an hour before ``as_of``, recorded now; returns the commit time (epoch s)."""
    now = datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ")
    event = datetime.fromisoformat(as_of).isoformat(sep=" ")
    with sqlite3.connect(db, timeout=30) as conn:
        next_id = conn.execute("SELECT COALESCE(MAX(activity_id), 0) + 1 FROM activities").fetchone()[0]
        conn.execute(
            "INSERT INTO activities (activity_id, lead_id, timestamp, activity_type, direction, "
            "duration_sec, page, note, recorded_at) VALUES (?, ?, datetime(?, '-1 hour'), 'quote_request', "
            "'inbound', NULL, NULL, 'asked for a quote: budget approved, decision this month', ?)",
            (next_id, lead, event, now))
    return time.time()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="artifacts/export",
                        help="model folder or registry version (default: %(default)s, from `make run`)")
    parser.add_argument("--registry", help="registry, when --model is a version")
    parser.add_argument("--n-leads", type=int, default=5000, help="demo CRM size (default: %(default)s)")
    parser.add_argument("--as-of", default="2025-09-01",
                        help="the demo CRM's 'now': the end of its history (default: %(default)s)")
    parser.add_argument("--work", help="folder for the database (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the database and print where it is")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the new score")
    args = parser.parse_args()
    if args.registry is None and not Path(args.model).exists():
        raise SystemExit(f"no model at {args.model}: run `make run` first, or pass --model")
    work = Path(args.work or tempfile.mkdtemp(prefix="leadscore-crm-demo-"))
    db = work / "crm.db"
    model = ["--model", args.model] + (["--registry", args.registry] if args.registry else [])
    print("1. the demo CRM in a database")
    run(["demo", "--db", str(db), "--n-leads", str(args.n_leads), "--replace"])
    print("\n2. score every open lead and write the scores onto the CRM, then follow it")
    sync = [*LEADSCORE, "sync", "--crm", str(db), *model, "--as-of", args.as_of, "--follow", "--json",
            "--no-log", "--interval", "0.1"]
    print(f"$ leadscore {shlex.join(sync[3:])} &", flush=True)
    log, errors = (work / "sync.jsonl").open("w"), (work / "sync.err").open("w")
    proc = subprocess.Popen(sync, stdout=log, stderr=errors)

    def passes() -> str:
        return (work / "sync.jsonl").read_text() + (work / "sync.err").read_text()

    try:
        deadline = time.monotonic() + 300
        while not (work / "sync.jsonl").read_text().strip():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"sync stopped:\n{passes()}")
            time.sleep(0.2)
        first = json.loads((work / "sync.jsonl").read_text().splitlines()[0])
        print(f"  first pass: {first['rescored']:,} open leads scored and written back in "
              f"{first['seconds']:.1f} s")
        lead = young_open_lead(db, args.as_of)
        before = score_of(db, lead)
        assert before is not None
        print(f"\n3. lead {lead} now: score {before[0]}, {before[1]}; a quote request arrives")
        committed = insert_quote_request(db, lead, args.as_of)
        while True:
            after = score_of(db, lead)
            if after is not None and after[2] != before[2]:
                break
            if time.time() - committed > args.timeout:
                raise SystemExit(f"no new score after {args.timeout:.0f} s:\n{passes()}")
            time.sleep(0.02)
        seen = time.time() - committed
        print(f"\n4. lead {lead} rescored {seen:.2f} s after the activity was committed: "
              f"score {before[0]} -> {after[0]}, {before[1]} -> {after[1]}")
        for text in after[3]:
            print(f"   + {text}")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        log.close()
        errors.close()
    print(f"\nThe database: {db}" if args.keep else "")
    if not args.keep:
        for path in work.iterdir():
            path.unlink()
        work.rmdir()


if __name__ == "__main__":
    main()
