"""``leadscore experiments create|list|show|assign|stop|results``: A/B experiments in the store."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from leadscore.artifacts.paths import LOG_TABLE
from leadscore.cli.common import add_command, add_params_option, load_params_or_defaults

if TYPE_CHECKING:
    import sqlalchemy as sa

    from leadscore.experiments.results import ExperimentResults
    from leadscore.experiments.store import ExperimentStore

STORE_HELP = "the store (default: SQLite predictions.db beside the registry, where `serve` logs scores)"


def open_experiments(args: argparse.Namespace) -> ExperimentStore:
    """The experiments of ``--db`` (default: the store beside the registry)."""
    return _open(args)[0]


def _open(args: argparse.Namespace) -> tuple[ExperimentStore, sa.Table]:
    """The experiments and the outcomes table of ``--db``."""
    from leadscore.experiments.store import ExperimentStore
    from leadscore.monitoring.predlog import open_database

    engine, _, outcomes = open_database(_store_url(args), getattr(args, "log_table", LOG_TABLE),
                                        getattr(args, "outcomes_table", "outcomes"))
    return ExperimentStore(engine), outcomes


def _store_url(args: argparse.Namespace) -> str:
    from leadscore.artifacts.paths import default_store_url
    from leadscore.artifacts.registry import Registry

    registry = Path(args.registry) if args.registry else Registry.default_root()
    return str(args.db or default_store_url(registry))


def _print(document: Any) -> None:
    from leadscore.core.jsonsafe import dumps

    print(dumps(document))


def _cmd_create(args: argparse.Namespace) -> None:
    params = load_params_or_defaults(args)
    settings = params.experiments
    experiment = open_experiments(args).create(
        args.name, control=args.control, treatment=args.treatment,
        split=settings.split if args.split is None else args.split,
        window_days=float(args.window_days or settings.window_days or params.snapshot.label_window_days),
        min_days=settings.min_days if args.min_days is None else args.min_days,
        mde=settings.mde if args.mde is None else args.mde, alpha=settings.alpha,
        description=args.description, rules=params.rules)
    if args.json:
        _print(experiment.to_dict())
        return
    print(f"experiment {experiment.name} running: {experiment.control} (control, "
          f"{1 - experiment.split:.0%}) vs {experiment.treatment} (treatment, {experiment.split:.0%}); "
          f"conversion within {experiment.window_days:g} days, at least {experiment.min_days:g} days")


def _cmd_list(args: argparse.Namespace) -> None:
    store = open_experiments(args)
    experiments = store.list_experiments()
    if args.json:
        _print({"experiments": [{**e.to_dict(), "assigned": store.counts(e.name)} for e in experiments]})
        return
    if not experiments:
        print("no experiments yet: `leadscore experiments create NAME --treatment VERSION`")
    for e in experiments:
        counts = store.counts(e.name)
        print(f"{e.name:<24} {e.status:<8} {e.control} vs {e.treatment}  split {e.split:g}  "
              f"since {e.created_at:%Y-%m-%d}  assigned {counts['control']} / {counts['treatment']}")


def _cmd_show(args: argparse.Namespace) -> None:
    store = open_experiments(args)
    experiment = store.get(args.name)
    counts = store.counts(args.name)
    if args.json:
        _print({**experiment.to_dict(), "assigned": counts})
        return
    for key, value in experiment.to_dict().items():
        if key not in ("salt", "rules") and value not in (None, ""):
            print(f"{key:<12} {value}")
    print(f"{'assigned':<12} control {counts['control']}, treatment {counts['treatment']}")


def _cmd_assign(args: argparse.Namespace) -> None:
    store = open_experiments(args)
    row = store.assign(store.running(args.name), args.lead_id)
    if args.json:
        _print({"experiment": args.name, "lead_id": row["lead_id"], "arm": row["arm"],
                "assigned_at": row["assigned_at"]})
    else:
        print(f"{row['lead_id']}: {row['arm']} (since {row['assigned_at']:%Y-%m-%d %H:%M} UTC)")


def _cmd_stop(args: argparse.Namespace) -> None:
    experiment = open_experiments(args).stop(args.name, args.reason)
    print(f"experiment {experiment.name} stopped at {experiment.stopped_at:%Y-%m-%d %H:%M} UTC; "
          f"`leadscore experiments results {experiment.name}` still reads it")


def load_results(args: argparse.Namespace) -> ExperimentResults:
    """The results of ``args.name`` as of ``--now``."""
    import pandas as pd

    from leadscore.data.tables import read_table, utc_timestamp
    from leadscore.experiments.results import results_from_store

    params = load_params_or_defaults(args)
    now = utc_timestamp(args.now, "--now") if args.now else pd.Timestamp.now(tz="UTC")
    revenue = None
    if args.revenue:
        revenue = read_table(args.revenue).rename(columns={args.revenue_column: "revenue"})
    return results_from_store(_store_url(args), args.name, params.experiments, now=now,
                              outcomes_table=args.outcomes_table, log_table=args.log_table, revenue=revenue)


def _cmd_results(args: argparse.Namespace) -> int:
    results = load_results(args)
    document = results.to_dict()
    if args.json:
        _print(document)
    else:
        print(render_results(document))
    return 0


def _cmd_simulate(args: argparse.Namespace) -> None:
    from leadscore.core.files import atomic_write_text
    from leadscore.core.jsonsafe import dumps
    from leadscore.demo.experiment import simulate_into_store
    from leadscore.scoring.scorer import Scorer

    params = load_params_or_defaults(args)
    scorer = Scorer.load(args.model, registry=args.registry, trust=True)
    found = simulate_into_store(_store_url(args), args.name, scorer, params, n_leads=args.n_leads,
                                seed=args.seed, capacity_share=args.capacity_share, mde=args.mde)
    doc = found.to_dict()
    if args.summary:
        atomic_write_text(Path(args.summary), dumps(doc) + "\n")
    if args.json:
        print(dumps(doc))
        return
    print(f"simulated experiment {found.name}: {found.leads:,} leads from {found.started_at[:10]} to "
          f"{found.stopped_at[:10]}, {found.conversions:,} conversions (all matured by "
          f"{found.matured_by[:10]}); true conversion: rules {found.true_control_rate:.2%}, model "
          f"{found.true_treatment_rate:.2%} (true lift {found.true_lift:+.2%})")


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def render_results(doc: dict[str, Any]) -> str:
    """The results as a short text for the terminal."""
    e, lift, rec = doc["experiment"], doc["lift"], doc["recommendation"]
    lines = [f"experiment {e['name']} ({e['status']}) as of {doc['as_of'][:16]}: {e['control']} vs "
             f"{e['treatment']}",
             f"  matured leads: control {doc['matured']['control']}, treatment {doc['matured']['treatment']}"
             f"; pending: {doc['pending']['control']} / {doc['pending']['treatment']}"]
    for arm in doc["arms"]:
        lines.append(f"  {arm['arm']:<10} {arm['conversions']:>6} / {arm['n']:<7} {_pct(arm['rate'])} "
                     f"(95% Wilson {_pct(arm['low'])} to {_pct(arm['high'])})")
    lines.append(f"  lift: {_pct(lift['absolute'])} ({_pct(lift['absolute_low'])} to "
                 f"{_pct(lift['absolute_high'])}), relative {_pct(lift['relative'])}; z-test p = "
                 f"{lift['p_value'] if lift['p_value'] is None else format(lift['p_value'], '.4g')}")
    seq = doc.get("sequential_p_value")
    lines.append(f"  always-valid (sequential) p = {'n/a' if seq is None else format(seq, '.4g')}; "
                 f"sample-ratio check p = {doc['srm']['p_value']:.4g}"
                 f"{'  MISMATCH: do not read the lift' if doc['srm']['mismatch'] else ''}")
    lines.append(f"  power at the planned effect ({_pct(doc['experiment']['mde'])}): "
                 f"{'n/a' if doc.get('power') is None else format(doc['power'], '.0%')}; planned sample "
                 f"{doc.get('required_total')} leads")
    lines.append(f"  recommendation: {rec['action'].upper()}")
    lines += [f"    {reason}" for reason in rec["reasons"]]
    return "\n".join(lines)


def _store_options(p: argparse.ArgumentParser, *, json_flag: bool = True) -> None:
    p.add_argument("--db", metavar="URL", help=STORE_HELP)
    p.add_argument("--registry", metavar="PATH",
                   help="model registry (default: $LEADSCORE_REGISTRY or registry)")
    if json_flag:
        p.add_argument("--json", action="store_true", help="one JSON document on stdout, for scripts")


def add_experiments_command(commands: argparse._SubParsersAction) -> None:
    """Add ``leadscore experiments`` and its subcommands to ``commands``."""
    top = commands.add_parser(
        "experiments", help="A/B experiments: rules vs model, or version vs version",
        description="A/B experiments in the store (the database `serve` logs to). Each lead is\n"
                    "assigned to an arm once, deterministically (a hash of the experiment's salt and the\n"
                    "lead id), scored by both arms, and answered with its own arm's score. Results count\n"
                    "only leads whose conversion window has closed.\n\n"
                    "examples:\n"
                    "  leadscore experiments create ml-vs-rules --control rules --treatment 20261201060000\n"
                    "  leadscore score leads.csv --out scored.csv --experiment ml-vs-rules\n"
                    "  leadscore experiments results ml-vs-rules            # read it every day: it is safe\n"
                    "  leadscore experiments stop ml-vs-rules --reason 'deployed'",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = top.add_subparsers(dest="experiments_command", required=True, metavar="SUBCOMMAND")

    p = add_command(sub, "create", _cmd_create, "start an experiment",
                    "Start experiment NAME now: leads are assigned from the first score or `assign`.\n"
                    "Defaults come from params.yaml `experiments` (split, mde, min_days, window).\n"
                    "A `rules` control ranks leads by params.yaml's `rules` point system, copied into\n"
                    "the experiment so it cannot change under it.")
    p.add_argument("name", metavar="NAME", help="letters, digits, '_', '.', '-'")
    p.add_argument("--treatment", required=True, metavar="VERSION", help="the model version being tested")
    p.add_argument("--control", default="rules", metavar="rules|VERSION",
                   help="the baseline: 'rules' (default) or a model version")
    p.add_argument("--split", type=float, metavar="SHARE", help="the treatment's share of leads (0.5)")
    p.add_argument("--window-days", type=float, metavar="DAYS",
                   help="conversion counted this long after assignment (default: the label window)")
    p.add_argument("--min-days", type=float, metavar="DAYS", help="no deploy before this (14)")
    p.add_argument("--mde", type=float, metavar="LIFT",
                   help="minimum detectable absolute lift, for the sample size (0.02)")
    p.add_argument("--description", default="", help="what is being tested and why")
    add_params_option(p)
    _store_options(p)

    p = add_command(sub, "list", _cmd_list, "every experiment, newest first",
                    "Every experiment, newest first, with its arm sizes.")
    _store_options(p)
    p = add_command(sub, "show", _cmd_show, "one experiment's settings and arm sizes",
                    "One experiment's settings and how many leads each arm has.")
    p.add_argument("name", metavar="NAME")
    _store_options(p)
    p = add_command(sub, "assign", _cmd_assign, "the arm of a lead (recorded once)",
                    "The arm of LEAD_ID in the running experiment NAME, recorded with its time the\n"
                    "first time (later calls return the same arm and time).")
    p.add_argument("name", metavar="NAME")
    p.add_argument("lead_id", metavar="LEAD_ID")
    _store_options(p)
    p = add_command(sub, "stop", _cmd_stop, "stop assigning leads",
                    "Stop experiment NAME: no new leads join; its results stay readable.")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--reason", default="", help="why (kept with the experiment)")
    _store_options(p, json_flag=False)
    p = add_command(sub, "results", _cmd_results, "conversion per arm, lift, tests and a recommendation",
                    "Results of NAME as of --now on the leads whose conversion window has closed:\n"
                    "conversion per arm (Wilson intervals), absolute and relative lift with intervals,\n"
                    "the two-proportion z-test, an always-valid sequential p-value (mSPRT: safe to read\n"
                    "every day), the sample-ratio check, power and the planned sample size, CUPED with\n"
                    "the pre-assignment probability, time to conversion, revenue per lead (--revenue),\n"
                    "and the recommendation with its reasons: deploy, keep running, iterate, rollback,\n"
                    "or investigate (sample-ratio mismatch: the assignment or logging is broken).")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--now", metavar="DATE", help="as of DATE (default: now)")
    p.add_argument("--revenue", metavar="FILE", help="a table of lead_id and revenue (won deals)")
    p.add_argument("--revenue-column", default="revenue", metavar="COL",
                   help="the revenue column of --revenue (default: %(default)s)")
    p.add_argument("--log-table", default=LOG_TABLE, metavar="NAME", help=argparse.SUPPRESS)
    p.add_argument("--outcomes-table", default="outcomes", metavar="NAME", help="outcomes table")
    add_params_option(p)
    _store_options(p)

    p = add_command(sub, "simulate", _cmd_simulate, "a simulated rules-vs-model experiment (demo)",
                    "Simulate experiment NAME on a new demo world (leads after the bundled extract):\n"
                    "the rules point system (control) and --model (treatment) rank the leads, a sales\n"
                    "team calling --capacity-share of a day's leads works each arm's leads in its\n"
                    "order, and a faster call raises the chance to convert (see data/README.md). The\n"
                    "store gets the experiment, its exposures and the conversions on their dates, as\n"
                    "production would; the true rates, which only a simulation knows, are printed\n"
                    "(and written to --summary).\n\n"
                    "example:\n"
                    "  leadscore experiments simulate demo-ml-vs-rules --model artifacts/export \\\n"
                    "      --db sqlite:///artifacts/experiments/store.db\n"
                    "  leadscore report experiment --name demo-ml-vs-rules \\\n"
                    "      --db sqlite:///artifacts/experiments/store.db")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--model", required=True, metavar="DIR|VERSION", help="the treatment model")
    p.add_argument("--n-leads", type=int, default=150_000, metavar="N",
                   help="leads generated for the simulated period (default: %(default)s)")
    p.add_argument("--seed", type=int, default=7, help="world and outcome seed (default: %(default)s)")
    p.add_argument("--capacity-share", type=float, default=0.30, metavar="SHARE",
                   help="calls a day over leads scored a day (default: %(default)s)")
    p.add_argument("--mde", type=float, metavar="LIFT",
                   help="minimum detectable absolute lift the experiment is planned for (default: "
                        "params.yaml experiments.mde)")
    p.add_argument("--summary", metavar="FILE", help="write the truth and counts as JSON here")
    add_params_option(p)
    _store_options(p)
