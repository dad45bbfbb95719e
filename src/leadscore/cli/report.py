"""``leadscore report``: a report notebook run into a dated, self-contained HTML file (for cron)."""

from __future__ import annotations

import argparse
import json
import time

from leadscore.cli.common import add_command

# leadscore.reporting.schedule.REPORTS (kept light here)
NAMES = ("eda", "model_comparison", "evaluation", "monitoring", "experiment")


def _cmd_report(args: argparse.Namespace) -> None:
    from leadscore.reporting.schedule import run_report

    started = time.perf_counter()
    page = run_report(args.name, model=args.model, since=args.since, data=args.data, db=args.db,
                      now=args.now, experiment=args.experiment, out_dir=args.out,
                      registry=args.registry, progress=not (args.quiet or args.json))
    seconds = time.perf_counter() - started
    index = page.parent.parent / "index.html"
    if args.json:
        print(json.dumps({"report": str(page), "index": str(index), "seconds": round(seconds, 1)}))
    else:
        print(f"{args.name} report: {page} ({seconds:.0f} s); index of all reports: {index}")


def add_report_command(commands: argparse._SubParsersAction) -> None:
    """Add ``leadscore report`` to ``commands``."""
    p = add_command(
        commands, "report", _cmd_report, "run a report notebook into a dated HTML file",
        "Run a parameterised report notebook with papermill and write one self-contained HTML\n"
        "file (figures embedded, code hidden, opens offline) to OUT/YYYY-MM-DD/NAME.html, then\n"
        "refresh OUT/index.html, which links every dated report. Run it from the project folder.\n\n"
        "reports:\n"
        "  evaluation        a model version on labelled leads (--model, --since, --data)\n"
        "  eda               the CRM extract (--since, --data: a snapshots table)\n"
        "  model_comparison  the candidates of the last training run\n"
        "  monitoring        drift, realized and estimated performance and alerts of the scores in\n"
        "                    a store (--db, --since, --now, --model: judge by one model)\n"
        "  experiment        one A/B experiment in a store (--name, --db, --now): conversion per\n"
        "                    arm, lift read day by day, sequential test, SRM, power, CUPED, decision\n\n"
        "examples:\n"
        "  leadscore report evaluation                      # the active model, test period\n"
        "  leadscore report evaluation --model 20261129120000 --since 2025-07-01\n"
        "  leadscore report monitoring --since 2025-03-01\n"
        "  leadscore report experiment --name ml-vs-rules\n"
        "  # every Monday at 06:00 (crontab -e):\n"
        "  0 6 * * 1  cd /srv/leadscore && .venv/bin/leadscore report evaluation -q")
    p.add_argument("name", choices=NAMES, metavar="NAME", help=", ".join(NAMES))
    p.add_argument("--model", metavar="VERSION",
                   help="registry version to report on (default: the active one; monitoring: a version "
                        "or model folder that judges every score)")
    p.add_argument("--since", metavar="DATE", help="only leads created on or after DATE (e.g. 2025-07-01)")
    p.add_argument("--data", metavar="FILE",
                   help="leads table (default: artifacts/split/test.parquet for evaluation, "
                        "artifacts/features/snapshots.parquet for eda)")
    p.add_argument("--db", metavar="URL",
                   help="monitoring, experiment: the store (default: predictions.db beside the registry)")
    p.add_argument("--now", metavar="DATE",
                   help="monitoring, experiment: as of DATE (default: the newest score; experiment: now)")
    p.add_argument("--name", dest="experiment", metavar="EXPERIMENT", help="experiment: its name")
    p.add_argument("--out", default="reports/html", metavar="DIR",
                   help="reports folder (default: %(default)s)")
    p.add_argument("--registry", default="registry", metavar="PATH",
                   help="model registry (default: %(default)s)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the report's path and timing as JSON")
