"""``leadscore monitor replay``: history replayed as production into a monitoring store; ``monitor
replay-loop``: the learning loop replayed on a drifting demo world."""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Any

from leadscore.cli.common import add_command, add_params_option, load_params_or_defaults
from leadscore.cli.monitor_options import add_store_options, open_store


def _cmd_replay(args: argparse.Namespace) -> None:
    import pandas as pd
    from tqdm.auto import tqdm

    from leadscore.core.jsonsafe import dumps
    from leadscore.data.tables import read_table, utc_timestamp
    from leadscore.demo.replay import log_rows, replay_leads, replay_outcomes, replay_start
    from leadscore.monitoring.log_rows import insert_rows
    from leadscore.monitoring.outcomes import OutcomeStore
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
        written += insert_rows(engine, log_table, log_rows(week, scored, inputs))
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
    """Add ``replay`` and ``replay-loop`` to the ``monitor`` subcommands."""
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
    _add_replay_loop(sub)


def _loop_check_lines(cycle: dict[str, Any]) -> list[str]:
    """One check of ``monitor replay-loop``: the cycle's decision on one line (or that no trigger fired),
    the champion's alerts and realized ROC-AUC underneath."""
    if not cycle["ran"]:
        return [f"{cycle['at']}  {cycle['champion']}  no trigger"] + \
            ([f"{'':12}champion's realized ROC-AUC check: {cycle['realized']}"] if cycle["realized"] else [])
    f, data = cycle["figures"], cycle["data"]
    fired = ",".join(t["name"] for t in cycle["triggers"] if t["fired"])
    held = f"{data['held_back'][0]}..{data['held_back'][1]} ({data['holdout_rows']:,})"
    gate = (f"{f['champion_roc_auc']:.3f} -> {f['challenger_roc_auc']:.3f}  {f['p_better']:<7.2g}  "
            f"{f['champion_brier']:.4f} -> {f['challenger_brier']:.4f}") if "champion_roc_auc" in f \
        else f"{'(too few leads to judge)':<42}"
    lines = [f"{cycle['at']}  {cycle['champion']}  {fired:<24} {cycle['version']}  {held:<30} {gate}  "
             f"{str(cycle['decision']).upper()}: {cycle['action']}"]
    lines += [f"{'':12}gate: {cycle['reasons'][-1]}"] if cycle["reasons"] else []
    lines += [f"{'':12}alert: {a}" for a in cycle["alerts"][:2]]
    if cycle["realized"]:
        lines.append(f"{'':12}champion's realized ROC-AUC check: {cycle['realized']}")
    return lines


def _month_line(m: dict[str, Any]) -> str:
    stale, active = m["stale_roc_auc"], m["active_roc_auc"]
    return (f"{m['month'][:7]:<8} {m['leads']:>6,} {m['converted']:>5,} {m['new_source_share']:>7.0%} "
            f"{stale:>7.3f} {active:>7.3f} {active - stale:>+7.3f}  {m['stale_brier']:>7.4f} "
            f"{m['active_brier']:>7.4f}  {', '.join(m['versions'])}")


def _summary_line(doc: dict[str, Any]) -> str:
    """Stale vs active on the pooled matured leads after the first promotion (or the drift)."""
    a = doc["after"]
    promoted = any(c["decision"] == "promote" for c in doc["checks"])
    where = f"after the first promotion ({a['since']})" if promoted else \
        f"no challenger promoted, the initial model stayed active; since the drift ({a['since']})"
    if "stale_roc_auc" not in a:
        return f"{where}: {a['leads']:,} matured leads, too few to compare"
    test = "" if a.get("p_better") is None else \
        f" ({a['diff']:+.4f}, SE {a['se']:.4f}, DeLong one-sided p = {a['p_better']:.2g})"
    others = a["others"]
    return (f"{where}: {a['leads']:,} matured leads ({a['converted']:,} converted), ROC-AUC stale "
            f"{a['stale_roc_auc']:.4f}, active {a['active_roc_auc']:.4f}{test}; on the {others['leads']:,} "
            f"leads of the other sources: stale {others['stale_roc_auc']:.4f}, active "
            f"{others['active_roc_auc']:.4f}")


def _loop_lines(doc: dict[str, Any]) -> list[str]:
    """``monitor replay-loop``'s report: the setting, the cycles, the months, the pooled comparison."""
    s = doc["settings"]
    kind = "WEAKENED (no feature derived from activities)" if s["weaken"] else "normal"
    cycles = [c for c in doc["checks"] if c["ran"]]
    decisions = Counter(str(c["action"]).split(" (")[0] for c in cycles)
    lines = [f"world: {s['n_leads']:,} leads over {s['months']} months from {s['start']} (seed {s['seed']}); "
             f"social_ads from {doc['drift_from']}",
             f"walk: {doc['walk'][0]} to {doc['walk'][1]}, every {s['step_days']} days, cycles at least "
             f"{s['cooldown_days']} days apart; challengers: {kind}",
             f"initial (stale) model {doc['initial']}: held-out ROC-AUC {doc['baseline']:.3f}", "",
             "checks and retraining cycles: the gate on the held-back months (ROC-AUC and Brier champion -> "
             "challenger, DeLong one-sided p that the challenger is better)",
             f"{'date':<10}  {'champion':<14}  {'triggers':<24} {'challenger':<14}  "
             f"{'held back (leads)':<30} {'ROC-AUC':<14}  {'p':<7}  {'Brier':<16}  decision"]
    for check in doc["checks"]:
        lines += _loop_check_lines(check)
    lines += ["", "realized on matured leads by month of scoring, both on the same leads: the stale model "
              "and the model active when each lead was scored",
              f"{'month':<8} {'leads':>6} {'conv':>5} {'social':>7} {'stale':>7} {'active':>7} {'diff':>7}  "
              f"{'Brier s':>7} {'Brier a':>7}  active model(s)",
              *map(_month_line, doc["months"]), "", _summary_line(doc),
              f"cycles: {len(cycles)} (" + ", ".join(f"{n} {k}" for k, n in sorted(decisions.items()))
              + f"); active at the end: {doc['active']}"
              + (" (the initial model)" if doc["active"] == doc["initial"] else "")]
    return lines


def _cmd_replay_loop(args: argparse.Namespace) -> None:
    import os
    import tempfile
    import time
    from pathlib import Path

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # many short fits: idle OpenMP threads must not spin

    from leadscore.artifacts.registry import Registry
    from leadscore.core.jsonsafe import dumps
    from leadscore.demo.loop import LoopSettings, loop_params, replay_loop

    given = {k: getattr(args, k) for k in ("n_leads", "months", "new_source_months", "seed", "lead_months",
                                           "step_days", "cooldown_days")}
    settings = LoopSettings(**{k: v for k, v in given.items() if v is not None}, weaken=args.weaken)
    params = loop_params(load_params_or_defaults(args), settings)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="leadscore-loop-") as tmp:
        registry = Registry(args.out or Path(tmp) / "registry", keep=100)
        doc = replay_loop(registry, params, settings, progress=not (args.quiet or args.json)).to_dict()
    if args.json:
        print(dumps(doc))
        return
    print("\n".join(_loop_lines(doc)))
    print(f"wall time {time.perf_counter() - started:.0f} s" + (f"; registry {args.out}" if args.out else ""))


def _add_replay_loop(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "replay-loop", _cmd_replay_loop, "the learning loop replayed on a drifting demo",
        "Generate a demo world in which the social_ads source (many leads, few conversions)\n"
        "appears for its last --new-source-months, and walk it as production from --lead-months\n"
        "before that: every --step-days the new leads are scored by the active model and, in\n"
        "its shadow, by the initial one; monitoring judges the active model (drift, realized\n"
        "ROC-AUC against its held-out value) and when a retrain trigger fires (an alert, or a\n"
        "yearly schedule) a cycle trains a challenger on what was known that day, gates it on\n"
        "the newest held-back months and activates it only if it passes. Training is quick:\n"
        "LightGBM alone, no tuning, no ensemble. The report: every cycle (triggers, ROC-AUCs,\n"
        "DeLong p, Brier, decision), and per month the realized ROC-AUC of the stale model and\n"
        "of the model active when each lead was scored, on the same matured leads. --weaken\n"
        "trains every challenger without the features derived from activities: the gate must\n"
        "reject it.\n\n"
        "examples:\n"
        "  leadscore monitor replay-loop\n"
        "  leadscore monitor replay-loop --weaken --out /tmp/loop-registry --json")
    p.add_argument("--n-leads", type=int, metavar="N", help="leads in the world (default: 30000)")
    p.add_argument("--months", type=int, metavar="N", help="length of the world (default: 30)")
    p.add_argument("--new-source-months", type=int, metavar="N",
                   help="the drift: social_ads exists in the world's last N months (default: 14)")
    p.add_argument("--seed", type=int, help="the world's seed (default: 42)")
    p.add_argument("--lead-months", type=int, metavar="N",
                   help="the walk and the initial model start N months before the drift (default: 3)")
    p.add_argument("--step-days", type=int, metavar="N", help="days per step of the walk (default: 14)")
    p.add_argument("--cooldown-days", type=int, metavar="N",
                   help="at least N days between two cycles (default: 56)")
    p.add_argument("--weaken", action="store_true", help="challengers without the activity features")
    p.add_argument("--out", metavar="DIR", help="keep the registry here (a new one; default: temporary)")
    p.add_argument("--json", action="store_true", help="everything as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_params_option(p)
