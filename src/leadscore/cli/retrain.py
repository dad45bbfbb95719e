"""``leadscore retrain``: the learning loop's retraining cycle, safe to run from cron."""

from __future__ import annotations

import argparse
from pathlib import Path

from leadscore.cli.common import add_command, add_params_option, load_params_or_defaults

NOT_PROMOTED = 3


def _alerts(args: argparse.Namespace, version: str | None) -> list[str]:
    """The alerts `leadscore monitor check` last saved for ``version`` in the store."""
    import sqlalchemy as sa

    from leadscore.artifacts.paths import default_store_url
    from leadscore.monitoring.exposition import load_states

    if version is None:
        return []
    engine = sa.create_engine(args.db or default_store_url(Path(args.registry)))
    try:
        states, _ = load_states(engine)
    finally:
        engine.dispose()
    return [f"{s.check} {s.subject}: {s.reason}" for s in states
            if s.state == "alert" and s.model_version == version]


def _cmd_retrain(args: argparse.Namespace) -> int:
    import pandas as pd

    from leadscore.artifacts.registry import Registry
    from leadscore.core.jsonsafe import dumps
    from leadscore.data.crm import load_crm, snapshot_table
    from leadscore.data.tables import utc_timestamp
    from leadscore.lifecycle.retrain import RetrainBusy, retrain

    params = load_params_or_defaults(args)
    registry = Registry(Path(args.registry))
    as_of = utc_timestamp(args.as_of, "--as-of") if args.as_of else None
    now = as_of if as_of is not None else pd.Timestamp.now(tz="UTC")
    tables = load_crm(args.crm)
    snapshots = snapshot_table(tables, params, as_of=None if as_of is None else as_of.tz_localize(None))
    labelled = snapshots[snapshots["status"] == "closed"].reset_index(drop=True)
    try:
        cycle = retrain(registry, labelled, params, now=now, alerts=_alerts(args, registry.active_version()),
                        if_needed=args.if_needed, progress=not (args.quiet or args.json))
    except RetrainBusy as exc:
        print(dumps({"ran": False, "busy": True, "reason": str(exc)}) if args.json else str(exc))
        return 0
    if args.json:
        print(dumps(cycle.as_dict()))
    else:
        for t in cycle.triggers:
            print(f"  trigger {t.name:<10} {'FIRED' if t.fired else 'no':<5}  {t.reason}")
        if not cycle.ran:
            print("no trigger fired: nothing to do")
        else:
            print(f"trained {cycle.version} on {cycle.data['rows']:,} leads "
                  f"({cycle.data['trained_on'][0]} to {cycle.data['trained_on'][1]}), gate on "
                  f"{cycle.data['holdout_rows']:,} held-back leads ({cycle.data['held_back'][0]} to "
                  f"{cycle.data['held_back'][1]}): {str(cycle.decision).upper()} -> {cycle.action} "
                  f"({cycle.seconds:.0f} s)")
            for reason in cycle.reasons:
                print(f"  {reason}")
    return NOT_PROMOTED if cycle.ran and not str(cycle.action).startswith("promoted") else 0


def add_retrain_command(commands: argparse._SubParsersAction) -> None:
    """Add ``leadscore retrain`` to ``commands``."""
    p = add_command(commands, "retrain", _cmd_retrain, "retrain when a trigger fires; gate; activate",
        "Check the triggers for the active model: labelled leads newer than its training data\n"
        "(retrain.min_new_labels), its age (retrain.max_age_days), an alert that `leadscore\n"
        "monitor check` saved for it (retrain.on_alert). When one fires (or without --if-needed):\n"
        "build the point-in-time rows from the CRM tables, train on all but the newest\n"
        "retrain.holdout_months with the same path as `dvc repro`'s train stage, register the new\n"
        "version, run the gate (`models promote`) on the held-back months, which neither model\n"
        "trained on, and activate it only if it passes. One cycle at a time per registry (a lock\n"
        "that a crash releases); every cycle is recorded in `leadscore models history`.\n\n"
        "exit status: 0 nothing to do, busy, or promoted; 3 retrained but not promoted\n\n"
        "examples:\n"
        "  leadscore retrain --crm data/raw --if-needed\n"
        "  # every day at 02:00 (crontab -e):\n"
        "  0 2 * * *  cd /srv/leadscore && .venv/bin/leadscore retrain --crm data/raw --if-needed -q")
    p.add_argument("--crm", required=True, metavar="DIR", help="CRM tables (leads, activities, outcomes)")
    p.add_argument("--as-of", metavar="TIME", help="the data as of TIME (default: all of it; `now` for age)")
    p.add_argument("--if-needed", action="store_true", help="only when a trigger fires")
    p.add_argument("--registry", default="registry", metavar="PATH",
                   help="model registry (default: %(default)s)")
    p.add_argument("--db", metavar="URL", help="the store with monitoring's alert states (default: beside "
                                                "the registry)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="the cycle as JSON")
    add_params_option(p)
