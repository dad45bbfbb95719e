"""``leadscore monitor replay``: history replayed as production into a monitoring store."""

from __future__ import annotations

import argparse
from typing import Any

from leadscore.cli.common import add_command, add_params_option, load_params_or_defaults
from leadscore.cli.store import add_store_options, open_store


def _cmd_replay(args: argparse.Namespace) -> None:
    import pandas as pd
    from tqdm.auto import tqdm

    from leadscore.core.jsonsafe import dumps
    from leadscore.data.tables import read_table, utc_timestamp
    from leadscore.monitoring.outcomes import OutcomeStore
    from leadscore.monitoring.replay import log_rows, replay_leads, replay_outcomes, replay_start, write_log
    from leadscore.scoring.scorer import Scorer

    params = load_params_or_defaults(args)
    scorer = Scorer.load(args.model, registry=args.registry, trust=True)
    snapshots = read_table(args.snapshots)
    start = utc_timestamp(args.start, "--start") if args.start else \
        replay_start(scorer.bundle.metadata, params.snapshot.snapshot_days)
    end = utc_timestamp(args.end, "--end") if args.end else \
        pd.to_datetime(snapshots["snapshot_at"], utc=True).max() + pd.Timedelta(seconds=1)
    leads = replay_leads(snapshots, start, end, snapshot_days=params.snapshot.snapshot_days)
    engine, log_table, outcomes_table = open_store(args)
    inputs = [c.name for c in scorer.schema.columns if c.name in leads.columns]
    weeks = leads["snapshot_at"].dt.tz_localize(None).dt.to_period("W-SUN")
    written = 0
    for _, week in tqdm(leads.groupby(weeks, sort=True), desc="weeks", unit="week", disable=args.quiet):
        scored = scorer.score_frame(week, reasons=args.reasons)
        written += write_log(engine, log_table, log_rows(week, scored, inputs))
    outcomes = replay_outcomes(read_table(args.outcomes), leads["lead_id"], end)
    stored = OutcomeStore(engine, outcomes_table).record_many(outcomes, what="the replayed outcomes") \
        if outcomes else 0
    doc: dict[str, Any] = {"model_version": scorer.version, "start": start.isoformat(),
                           "end": end.isoformat(), "weeks": int(weeks.nunique()), "scored": written,
                           "outcomes": stored,
                           "store": engine.url.render_as_string(hide_password=True)}
    if args.json:
        print(dumps(doc))
        return
    print(f"replayed {written:,} leads over {doc['weeks']} weeks ({start:%Y-%m-%d} to {end:%Y-%m-%d}) with "
          f"model {scorer.version}; {stored:,} conversions recorded on their real dates in {doc['store']}")


def add_replay_command(sub: argparse._SubParsersAction) -> None:
    """Add ``replay`` to the ``monitor`` subcommands."""
    p = add_command(sub, "replay", _cmd_replay, "replay past leads as production into a store",
        "Score every lead whose snapshot falls between --start and --end at that moment, week\n"
        "by week, with one model, log the scores as the API does, and record the conversions on\n"
        "the day they happened. Monitoring the store as of any day then shows what production\n"
        "would have seen. --start defaults to the first Monday after the model's training data\n"
        "(plus the snapshot delay), so no replayed lead was seen in training. Running it again\n"
        "adds nothing twice.\n\n"
        "examples:\n"
        "  leadscore monitor replay --snapshots artifacts/features/snapshots.parquet \\\n"
        "      --outcomes data/raw/outcomes.parquet --model artifacts/export \\\n"
        "      --db sqlite:///artifacts/monitoring/store.db\n"
        "  leadscore monitor performance --db sqlite:///artifacts/monitoring/store.db \\\n"
        "      --model artifacts/export --now 2025-08-31")
    p.add_argument("--snapshots", required=True, metavar="FILE",
                   help="point-in-time lead rows (lead_id, created_at, snapshot_at, features)")
    p.add_argument("--outcomes", required=True, metavar="FILE",
                   help="outcomes with their dates (lead_id, converted, converted_at)")
    p.add_argument("--start", metavar="DATE", help="first snapshot time replayed (default: see above)")
    p.add_argument("--end", metavar="DATE", help="replay up to DATE (default: the last snapshot)")
    p.add_argument("--reasons", type=int, default=3, metavar="K",
                   help="reasons per lead (default: %(default)s)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_store_options(p)
    add_params_option(p)
