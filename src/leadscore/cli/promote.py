"""``leadscore models challenger|promote|history``: the champion/challenger gate and the registry's
history of what happened to its versions."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from leadscore.artifacts.paths import LOG_TABLE
from leadscore.cli.common import load_params_or_defaults

Adder = Callable[..., argparse.ArgumentParser]
PROMOTED, NOT_PROMOTED = 0, 3


def _registry(args: argparse.Namespace) -> Any:
    from leadscore.artifacts.registry import Registry

    return Registry(Path(args.registry) if args.registry else Registry.default_root(), keep=args.keep)


def _cmd_challenger(args: argparse.Namespace) -> None:
    registry = _registry(args)
    if args.clear == bool(args.version):
        from leadscore.core.exceptions import ConfigError

        raise ConfigError("give a VERSION to mark as challenger, or --clear")
    registry.set_challenger(None if args.clear else args.version)
    active = registry.active_version()
    print(f"no challenger in {registry.root}/" if args.clear else
          f"{args.version} is the challenger: `leadscore serve` and `leadscore score` score every lead "
          f"with it too (logged, never returned); {active} still decides")


def _cmd_promote(args: argparse.Namespace) -> int:
    import pandas as pd

    from leadscore.cli.monitor_options import open_store
    from leadscore.core.jsonsafe import dumps
    from leadscore.data.tables import read_table, utc_timestamp
    from leadscore.lifecycle.promotion import decide_and_apply, holdout_evidence, shadow_evidence
    from leadscore.monitoring.outcomes import OutcomeStore
    from leadscore.monitoring.predlog import read_log

    params = load_params_or_defaults(args)
    registry = _registry(args)
    champion = registry.active_version()
    if args.data:
        evidence = holdout_evidence(read_table(args.data), registry.load(champion),
                                    registry.load(args.version), label=args.label,
                                    time_column=args.time_column)
    else:
        engine, log_table, outcomes_table = open_store(args)
        now = utc_timestamp(args.now, "--now") if args.now else pd.Timestamp.now(tz="UTC")
        evidence = shadow_evidence(read_log(engine, log_table), OutcomeStore(engine, outcomes_table).frame(),
                                   str(champion), args.version, now=now,
                                   window_days=float(args.window_days or params.snapshot.label_window_days))
    decision, action = decide_and_apply(registry, args.version, evidence, params.promotion, force=args.force)
    if args.json:
        print(dumps({"challenger": args.version, "champion": champion, "decision": decision.decision,
                     "action": action, "evidence": evidence.source, "reasons": decision.reasons,
                     "figures": decision.figures}))
    else:
        print(f"{args.version} vs {champion}: {decision.decision.upper()} -> {action}")
        print(f"  evidence: {evidence.source}")
        for reason in decision.reasons:
            print(f"  {reason}")
    return PROMOTED if action.startswith("promoted") else NOT_PROMOTED


def _cmd_history(args: argparse.Namespace) -> None:
    events = _registry(args).events(limit=args.limit)
    if args.json:
        print(json.dumps({"events": events}, default=str))
        return
    if not events:
        print("no events yet")
    for e in events:
        detail = {k: v for k, v in e.items() if k not in ("at", "event", "figures", "reasons")}
        text = ", ".join(f"{k}={v}" for k, v in detail.items() if v is not None)
        print(f"{e['at']}  {e['event']:<10} {text}")
        for reason in e.get("reasons") or []:
            print(f"{'':<36}{reason}")


def add_lifecycle_commands(sub: argparse._SubParsersAction, add: Adder) -> None:
    """Add ``challenger``, ``promote`` and ``history`` to the ``models`` subcommands."""
    p = add(sub, "challenger", _cmd_challenger, "mark a version as challenger (shadow-scored)",
            "Mark VERSION as the challenger: the API and batch scoring then score every lead with\n"
            "it as well and log those scores (never returned), so `models promote` can compare\n"
            "it with the active version on the same live leads. --clear removes the mark.")
    p.add_argument("version", nargs="?", metavar="VERSION", help="a registered version")
    p.add_argument("--clear", action="store_true", help="no challenger")
    p = add(sub, "promote", _cmd_promote, "the gate: activate a challenger only on evidence",
            "Compare VERSION with the active version on the same most recent leads whose labels\n"
            "matured: the shadow scores in the store, or --data FILE (labelled leads newer than\n"
            "both versions' training data, scored by both now). Fewer than promotion.min_labeled\n"
            "leads: keep. DeLong's paired test on ROC-AUC worse at promotion.alpha: reject;\n"
            "probabilities worse (Brier or ECE beyond their tolerance): reject; better at alpha:\n"
            "promote (activate). Otherwise keep it as challenger. The decision, its figures and\n"
            "reasons go to the registry's history (`models history`).\n\n"
            "exit status: 0 promoted, 3 kept or rejected\n\n"
            "examples:\n"
            "  leadscore models promote 20261201060000                  # shadow scores in the store\n"
            "  leadscore models promote 20261201060000 --data recent_labelled.parquet --json\n"
            "  leadscore models promote 20261201060000 --force          # admins; recorded as forced")
    p.add_argument("version", metavar="VERSION", help="the challenger")
    p.add_argument("--data", metavar="FILE",
                   help="labelled leads to score with both (default: the shadow scores)")
    p.add_argument("--label", default="label", metavar="COL",
                   help="outcome column of --data (default: %(default)s)")
    p.add_argument("--time-column", default="created_at", metavar="COL",
                   help="--data rows after both training windows by this column (default: %(default)s)")
    p.add_argument("--db", metavar="URL",
                   help="the store with the shadow scores (default: beside the registry)")
    p.add_argument("--log-table", default=LOG_TABLE, metavar="NAME", help=argparse.SUPPRESS)
    p.add_argument("--outcomes-table", default="outcomes", metavar="NAME", help=argparse.SUPPRESS)
    p.add_argument("--now", metavar="DATE", help="labels matured as of DATE (default: now)")
    p.add_argument("--window-days", type=float, metavar="N", help="label window (default: params.yaml)")
    p.add_argument("--force", action="store_true", help="promote whatever the gate says (recorded as forced)")
    p.add_argument("--params", default="params.yaml", metavar="PATH",
                   help="settings file with the promotion section (default: %(default)s; built-in "
                        "defaults when missing)")
    p.add_argument("--json", action="store_true", help="the decision and its figures as JSON")
    p = add(sub, "history", _cmd_history, "what happened to the registry's versions",
            "Registrations, activations, rollbacks, challengers, gate decisions (with their figures)\n"
            "and pruned versions, oldest first.")
    p.add_argument("--limit", type=int, default=50, metavar="N",
                   help="the last N events (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="the events as JSON")
