"""``leadscore sync``: rescore the leads whose profile or activities changed and write the scores back
onto the CRM database; ``--follow`` keeps doing it."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any

from leadscore.cli.common import add_command, add_crm_options, add_params_option, load_params_or_defaults

if TYPE_CHECKING:
    from leadscore.data.crm_database import CrmDatabase
    from leadscore.data.mapping import CrmMapping
    from leadscore.scoring.scorer import Scorer
    from leadscore.scoring.writeback import ScoreWriteBack


def open_crm(url: str, mapping_file: str | None) -> tuple[CrmDatabase, CrmMapping]:
    """The CRM database through the mapping file (default: the demo schema), checked before any work."""
    from leadscore.data.crm_database import CrmDatabase
    from leadscore.data.mapping import DEMO_MAPPING, load_mapping

    mapping = load_mapping(mapping_file) if mapping_file else DEMO_MAPPING
    db = CrmDatabase(url, mapping)
    db.check()
    return db, mapping


def open_writeback(url: str, mapping: CrmMapping, table: str, engine: Any = None) -> ScoreWriteBack:
    """Write-back into ``table`` and the lead columns the mapping names."""
    from leadscore.scoring.writeback import ScoreWriteBack

    return ScoreWriteBack(url, table, lead_table=mapping.leads.table, lead_id_column=mapping.leads.id,
                          lead_columns=dict(mapping.leads.write_back), engine=engine)


class _ActiveScorer:
    """The registry's active model, reloaded when another version is activated (or a fixed model)."""

    def __init__(self, model: str | None, registry: str | None) -> None:
        from leadscore.artifacts.registry import Registry

        self.model, self.registry = model, Registry(registry or Registry.default_root())
        self._scorer: Scorer | None = None

    def __call__(self) -> Scorer:
        from leadscore.scoring.scorer import Scorer

        wanted = self.model or self.registry.active_version()
        if self._scorer is None or (self.model is None and wanted != self._scorer.version):
            self._scorer = Scorer.load(self.model, registry=self.registry.root)
        return self._scorer


def _cmd_sync(args: argparse.Namespace) -> None:
    from datetime import timedelta

    from leadscore.artifacts.paths import LOG_TABLE, OUTCOMES_TABLE, default_store_url
    from leadscore.core.database import safe_url
    from leadscore.lifecycle.sync import CrmSync, install_notify, notification_waiter
    from leadscore.monitoring.predlog import open_database
    from leadscore.scoring.crm_leads import as_of_time

    db, mapping = open_crm(args.crm, args.crm_map)
    if args.install_notify:
        tables = [mapping.leads.table, mapping.activities.table]
        made = install_notify(db.engine, tables)
        print(f"installed {len(made)} trigger(s) notifying '{args.crm and safe_url(args.crm)}' listeners: "
              f"{', '.join(made)}")
        return
    scorer = _ActiveScorer(args.model, args.registry)
    first = scorer()  # fail now, before any work, if there is no model
    log_target = None
    if not args.no_log:
        url = args.db or default_store_url(scorer.registry.root)
        engine, table, _ = open_database(url, LOG_TABLE, OUTCOMES_TABLE)
        log_target = (engine, table)
    at = as_of_time(args.as_of) if args.as_of else None
    writeback = open_writeback(args.crm, mapping, args.scores_table)
    sync = CrmSync(db, scorer, writeback, load_params_or_defaults(args), log_target=log_target,
                   name=args.name, reasons=args.reasons, batch_size=args.batch_size,
                   overlap=timedelta(seconds=args.overlap), as_of=(lambda: at) if at is not None else None)
    if args.from_newest and sync.mark() is None:
        mark = sync.start_at_newest()
        print(f"mark set to the newest change, {mark.isoformat() if mark is not None else '(none)'}: only "
              "later changes are rescored", file=sys.stderr)
    stop = sync.stop

    def on_signal(signum: int, _frame: Any) -> None:
        print(f"leadscore sync: {signal.Signals(signum).name}: finishing the current batch", file=sys.stderr)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    def report(stats: Any) -> None:
        if args.json:
            print(json.dumps({"changed": stats.changed, "rescored": stats.rescored,
                              "repeated": stats.repeated,
                              "skipped": stats.skipped, "seconds": round(stats.seconds, 4),
                              "mark": None if stats.mark is None else stats.mark.isoformat(),
                              "model_version": scorer().version}), flush=True)
        elif stats.changed or not args.follow:
            skipped = "; ".join(f"{n:,} {why}" for why, n in stats.skipped.items())
            print(f"rescored {stats.rescored:,} of {stats.changed:,} changed lead(s) with model "
                  f"{scorer().version} in {stats.seconds:.2f} s"
                  + (f" ({skipped} skipped)" if skipped else "")
                  + f"; mark {stats.mark.isoformat() if stats.mark is not None else '(none)'}", flush=True)

    if not args.follow:
        report(sync.run_once())
        return
    wake = notification_waiter(db.engine) if not args.poll_only else None
    print(f"following {safe_url(args.crm)} with model {first.version}: "
          f"{'PostgreSQL notifications and ' if wake else ''}a look every {args.interval:g} s; "
          "Ctrl-C or SIGTERM stops after the current batch", file=sys.stderr, flush=True)
    sync.follow(interval=args.interval, on_pass=report, wake=wake)


def add_sync_command(commands: argparse._SubParsersAction) -> None:
    """Add ``leadscore sync`` to ``commands``."""
    p = add_command(
        commands, "sync", _cmd_sync, "rescore leads that changed in the CRM database and write scores back",
        "Rescore every lead whose profile or activities changed since the last committed high-water\n"
        "mark, and write each score back onto the CRM: table lead_scores (one row per lead: score,\n"
        "probability, tier, action, confidence, reasons, model_version, scored_at) and the lead\n"
        "columns the mapping's leads.write_back names, in one transaction with the new mark.\n"
        "Features are built by the training feature code from that lead's rows, as of now (or\n"
        "--as-of), with the model's snapshot settings: a lead older than snapshot_days keeps the\n"
        "features of its first snapshot_days, as in training. Leads that converted or whose label\n"
        "window closed are counted and skipped. Every score is also logged to the prediction log.\n\n"
        "Changes are found by the mapping's changed_at columns (when a row was inserted or\n"
        "updated), never by the activity's own time, so a late-logged call is seen. The mark lives\n"
        "in the CRM database (leadscore_sync_state): after a crash or kill -9 the next start\n"
        "resumes from it and misses nothing. With --follow, PostgreSQL notifications (after\n"
        "--install-notify) wake it at once; otherwise it looks every --interval seconds.\n\n"
        "examples:\n"
        "  leadscore demo --db crm.db --n-leads 2000\n"
        "  leadscore sync --crm crm.db --as-of 2025-09-01          # one pass: every lead the first time\n"
        "  leadscore sync --crm crm.db --as-of 2025-09-01 --follow # then keep up with new activity\n"
        "  leadscore sync --crm postgresql+psycopg://u@host/crm --crm-map mapping.yaml --install-notify\n"
        "  leadscore sync --crm postgresql+psycopg://u@host/crm --crm-map mapping.yaml --follow --json")
    add_crm_options(p, required=True, crm_help="the CRM database (SQLAlchemy URL, or a .db/.sqlite file)")
    p.add_argument("--model", metavar="DIR|VERSION",
                   help="model folder or registry version (default: the active one, followed when it "
                        "changes)")
    p.add_argument("--registry", metavar="PATH",
                   help="model registry (default: $LEADSCORE_REGISTRY or ./registry)")
    p.add_argument("--db", metavar="URL",
                   help="the prediction log's store (default: predictions.db beside the registry)")
    p.add_argument("--no-log", action="store_true", help="do not log the scores to the prediction log")
    p.add_argument("--follow", action="store_true", help="keep rescoring as changes arrive")
    p.add_argument("--interval", type=float, default=0.2, metavar="S",
                   help="with --follow: seconds between looks when nothing changed (default: %(default)s)")
    p.add_argument("--poll-only", action="store_true", help="with --follow: never LISTEN, only poll")
    p.add_argument("--overlap", type=float, default=5.0, metavar="S",
                   help="re-read changes this many seconds before the mark, for transactions that commit "
                        "late (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=500,
                   help="leads per write-back transaction (default: 500)")
    p.add_argument("--reasons", type=int, default=3, metavar="K", help="top K reasons per side (default: 3)")
    p.add_argument("--name", default="default",
                   help="this sync's name: its own mark (several syncs of one CRM; default: %(default)s)")
    p.add_argument("--from-newest", action="store_true",
                   help="on the first run (no mark yet): start from the newest change instead of rescoring "
                        "every lead (their scores are current already, e.g. from `leadscore score`)")
    p.add_argument("--install-notify", action="store_true",
                   help="PostgreSQL: create triggers on the lead and activity tables that wake --follow at "
                        "once, then exit")
    p.add_argument("--json", action="store_true", help="one JSON line per pass (for scripts)")
    add_params_option(p)


