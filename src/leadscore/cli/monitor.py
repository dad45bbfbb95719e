"""``leadscore outcomes import`` and ``leadscore monitor performance|drift``: the learning loop's inputs
and its first checks, on the store the API and batch scoring write to."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from leadscore.cli.common import add_command, add_params_option, load_params_or_defaults
from leadscore.cli.monitor_options import add_store_options, model_bundle, model_metadata, open_store
from leadscore.cli.replay import add_replay_command

if TYPE_CHECKING:
    import pandas as pd

def _cmd_outcomes_import(args: argparse.Namespace) -> None:
    from leadscore.core.exceptions import ConfigError
    from leadscore.data.tables import read_table
    from leadscore.monitoring.outcomes import OutcomeStore, parse_outcomes

    if bool(args.input) == bool(args.query):
        raise ConfigError("give either --input FILE or --query SQL (with --source URL)")
    if args.query and not args.source:
        raise ConfigError("--query needs --source URL: the database to run it on")
    if args.input:
        frame = read_table(args.input)
    else:
        import pandas as pd

        from leadscore.scoring.sql import read_sql_chunks

        chunks = list(read_sql_chunks(args.source, args.query, chunk_size=100_000))
        frame = pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame()
    parsed = parse_outcomes(frame, lead_id=args.lead_id, converted=args.converted,
                            converted_at=args.converted_at)
    rejects = None
    if len(parsed.rejected):
        from leadscore.data.tables import write_table

        rejects = Path(args.rejects or (f"{Path(args.input).with_suffix('')}.rejected.csv" if args.input
                                        else "outcomes.rejected.csv"))
        write_table(parsed.rejected, rejects)
    engine, _, table = open_store(args)
    stored = OutcomeStore(engine, table).record_many(parsed.rows)
    doc = {"rows": len(frame), "stored": stored, "rejected": len(parsed.rejected),
           "superseded": parsed.superseded, "rejects_file": None if rejects is None else str(rejects),
           "store": engine.url.render_as_string(hide_password=True)}
    if args.json:
        print(json.dumps(doc))
        return
    print(f"{stored:,} outcome(s) stored in {doc['store']} ({table.name}), {len(frame):,} row(s) read")
    if parsed.superseded:
        print(f"  {parsed.superseded:,} earlier row(s) for a lead that appears again later: "
              "the later row wins")
    if rejects is not None:
        reasons = parsed.rejected["reason"].value_counts()
        print(f"  {len(parsed.rejected):,} row(s) rejected, written with their reason to {rejects}:")
        for reason, count in reasons.items():
            print(f"    {count:,} x {reason}")


def _scores(args: argparse.Namespace, *, inputs: bool = False) -> tuple[pd.DataFrame, Any]:
    """Logged (or filed) scores and the engine of the store."""
    from leadscore.data.tables import read_table, utc_timestamp
    from leadscore.monitoring.predlog import read_log

    engine, log_table, outcomes_table = open_store(args)
    since = None if getattr(args, "since", None) is None else utc_timestamp(args.since, "--since")
    if getattr(args, "scores", None):
        frame = read_table(args.scores)
        if args.version:
            frame = frame[frame["model_version"].astype(str) == args.version]
        return frame, (engine, outcomes_table)
    if getattr(args, "scores_table", None):
        from leadscore.monitoring.predlog import read_scores_table

        frame = read_scores_table(engine, args.scores_table, version=args.version, since=since)
        return frame, (engine, outcomes_table)
    logged = read_log(engine, log_table, version=args.version, since=since, inputs=inputs)
    return logged, (engine, outcomes_table)


def _labelled(args: argparse.Namespace) -> dict[str, Any] | None:
    """The scores joined to their outcomes as of ``--now``, with the label window and top tier used;
    None when nothing was scored."""
    import pandas as pd

    from leadscore.data.tables import utc_timestamp
    from leadscore.evaluation.tiers import saved_tiers
    from leadscore.monitoring.labels import label_scores
    from leadscore.monitoring.outcomes import OutcomeStore

    params = load_params_or_defaults(args)
    scores, (engine, outcomes_table) = _scores(args)
    if scores.empty:
        return None
    outcomes = OutcomeStore(engine, outcomes_table).frame()
    meta = model_metadata(args, args.version or str(scores["model_version"].astype(str).iloc[-1]))
    window = float(args.window_days or (meta.get("snapshot") or {}).get("label_window_days")
                   or params.snapshot.label_window_days)
    tiers = saved_tiers(meta)
    now = utc_timestamp(args.now, "--now") if args.now else pd.Timestamp.now(tz="UTC")
    return {"scores": scores, "outcomes": outcomes, "window": window, "now": now, "params": params,
            "top_tier": tiers[0].name if tiers else None, "meta": meta,
            "labelled": label_scores(scores, outcomes, window_days=window, now=now)}


def _cmd_performance(args: argparse.Namespace) -> None:
    from leadscore.core.jsonsafe import dumps
    from leadscore.monitoring.performance import calibration_by_period, realized_performance

    joined = _labelled(args)
    if joined is None:
        print(dumps({"rows": []}) if args.json else "no scores logged yet")
        return
    window, now = joined["window"], joined["now"]
    table = realized_performance(joined["labelled"], by=args.by, segment=args.segment,
                                 min_labelled=joined["params"].monitoring.min_labelled,
                                 top_tier=joined["top_tier"])
    if args.json:
        curves = calibration_by_period(joined["labelled"], by=args.by,
                                       min_labelled=joined["params"].monitoring.min_labelled)
        print(dumps({"window_days": window, "now": now.isoformat(), "rows": table.to_dict("records"),
                     "calibration": curves.to_dict("records")}))
        return
    print(f"realized performance (label window {window:g} days, as of {now:%Y-%m-%d}); open leads are "
          f"never counted as non-converters")
    shown = [c for c in ("model_version", "period", args.segment, "leads", "labelled", "open",
                         "conversion_rate", "roc_auc", "roc_auc_low", "roc_auc_high", "pr_auc", "brier",
                         "ece", "top_decile_rate", "top_tier_rate", "note") if c and c in table.columns]
    print(table[shown].to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep="-"))


def _cmd_estimate(args: argparse.Namespace) -> None:
    from leadscore.core.jsonsafe import dumps
    from leadscore.monitoring.estimate import backtest_estimates, conversion_delay_cdf, estimate_performance

    joined = _labelled(args)
    if joined is None:
        print(dumps({"rows": []}) if args.json else "no scores logged yet")
        return
    window, now, top_tier = joined["window"], joined["now"], joined["top_tier"]
    if args.backtest:
        table = backtest_estimates(joined["scores"], joined["outcomes"], window_days=window, now=now,
                                   by=args.by, lag_days=args.lag_days, top_tier=top_tier,
                                   n_sim=args.simulations)
        coverage = {name: (None if table.empty else float(table[f"{name}_within"].dropna().mean()))
                    for name in ("conversion_rate", "roc_auc", "top_tier_rate")}
        if args.json:
            print(dumps({"window_days": window, "now": now.isoformat(), "lag_days": args.lag_days,
                         "coverage": coverage, "rows": table.to_dict("records")}))
            return
        if table.empty:
            print(f"no {args.by} has matured yet (label window {window:g} days, as of {now:%Y-%m-%d})")
            return
        print(f"estimates made {args.lag_days:g} days after each {args.by} ended, against the realized "
              f"values once every label matured (95% intervals, as of {now:%Y-%m-%d})")
        for name in ("conversion_rate", "roc_auc", "top_tier_rate"):
            table[name] = [f"{e:.3f} [{lo:.3f}, {hi:.3f}] {r:.3f} {'in' if w else 'OUT'}"
                           if w is not None else "-" for e, lo, hi, r, w in zip(
                               table[f"est_{name}"], table[f"{name}_low"], table[f"{name}_high"],
                               table[f"real_{name}"], table[f"{name}_within"], strict=True)]
        print(table[["model_version", "period", "leads", "open_then", "conversion_rate", "roc_auc",
                     "top_tier_rate"]].to_string(index=False))
        print("within the interval: " + ", ".join(
            f"{name} {share:.0%}" for name, share in coverage.items() if share is not None))
        return
    delay = conversion_delay_cdf(joined["labelled"], window_days=window, now=now)
    table = estimate_performance(joined["labelled"], now=now, by=args.by, delay=delay, top_tier=top_tier,
                                 n_sim=args.simulations)
    if args.json:
        print(dumps({"window_days": window, "now": now.isoformat(), "delay_adjusted": delay is not None,
                     "rows": table.to_dict("records")}))
        return
    print(f"estimated performance as of {now:%Y-%m-%d} from the calibrated scores (95% intervals); "
          + ("open leads discounted by the time they have gone without converting"
             if delay is not None else "no matured conversions yet to measure conversion delays"))
    for name in ("conversion_rate", "roc_auc", "top_tier_rate"):
        table[name] = [f"{e:.3f} [{lo:.3f}, {hi:.3f}]" if e == e else "-" for e, lo, hi in zip(
            table[f"est_{name}"], table[f"est_{name}_low"], table[f"est_{name}_high"], strict=True)]
    print(table[["model_version", "period", "leads", "open", "conversion_rate", "roc_auc",
                 "top_tier_rate"]].to_string(index=False))


def _cmd_drift(args: argparse.Namespace) -> None:
    from dataclasses import asdict

    from leadscore.core.exceptions import ConfigError
    from leadscore.core.jsonsafe import dumps
    from leadscore.data.tables import read_table, utc_timestamp
    from leadscore.monitoring.drift import DriftThresholds, drift_by_period

    params = load_params_or_defaults(args).monitoring
    thresholds = DriftThresholds.from_settings(params)
    results = []
    if args.input:
        leads = read_table(args.input)
        if args.since:
            if args.time_column not in leads:
                raise ConfigError(f"--since needs the time column '{args.time_column}' in {args.input}")
            import pandas as pd

            since = utc_timestamp(args.since, "--since")
            leads = leads[pd.to_datetime(leads[args.time_column], utc=True) >= since]
        bundle = model_bundle(args, args.version)
        version = args.version or str(bundle.metadata.get("version") or args.model)
        times = leads.get(args.time_column)
        results = drift_by_period(leads.reset_index(drop=True), bundle, version,
                                  times=None if times is None else times.reset_index(drop=True),
                                  by=args.by, thresholds=thresholds, ignore=params.ignore)
    else:
        scores, _ = _scores(args, inputs=True)
        for version, part in scores.groupby("model_version", sort=True):
            part = part.reset_index(drop=True)
            results += drift_by_period(part, model_bundle(args, str(version)), str(version),
                                       times=part["scored_at"], probabilities=part["probability"].to_numpy(),
                                       by=args.by, thresholds=thresholds, ignore=params.ignore)
    if args.json:
        print(dumps({"thresholds": asdict(thresholds), "periods": results}))
        return
    if not results:
        print("no scored leads to check")
    for result in results:
        flagged = [f for f in result["features"] if f["state"] in ("warn", "alert")]
        print(f"{result['model_version']}  {result['period']}  {result['n']:>7,} leads  "
              f"{result['state'].upper()}  score: {result['score']['state']} ({result['score']['reason']})")
        for f in flagged[:args.top]:
            print(f"    {f['state']:<5}  {f['feature']:<28} {f['reason']}")
        if len(flagged) > args.top:
            print(f"    ... {len(flagged) - args.top} more (--top N, or --json)")


def _cmd_check(args: argparse.Namespace) -> int:
    import functools
    import sys

    import pandas as pd

    from leadscore.core.jsonsafe import dumps
    from leadscore.data.tables import utc_timestamp
    from leadscore.monitoring.alerts import LEVELS, overall_state, raised
    from leadscore.monitoring.checks import run_checks
    from leadscore.monitoring.exposition import save_states, write_textfile
    from leadscore.monitoring.outcomes import OutcomeStore
    from leadscore.monitoring.webhook import post_json, slack_message

    params = load_params_or_defaults(args)
    scores, (engine, outcomes_table) = _scores(args, inputs=True)
    now = utc_timestamp(args.now, "--now") if args.now else pd.Timestamp.now(tz="UTC")
    if not scores.empty:
        scores = scores[scores["scored_at"] <= now]
    window = float(args.window_days or params.snapshot.label_window_days)
    bundle_of = functools.cache(lambda version: model_bundle(args, version))  # one load per version
    report = run_checks(scores, OutcomeStore(engine, outcomes_table).frame(), bundle_of, now=now,
                        window_days=window, settings=params.monitoring, by=args.by,
                        n_sim=args.simulations)
    checked_at = pd.Timestamp.now(tz="UTC").to_pydatetime()
    save_states(engine, report.states, checked_at)
    textfile = None if args.prometheus_textfile is None else \
        str(write_textfile(args.prometheus_textfile, report.states, checked_at))
    shown = raised(report.states)
    delivery = None
    if args.webhook and shown:
        delivery = post_json(args.webhook, slack_message(shown), attempts=args.webhook_attempts)
        if not delivery.delivered:
            print(f"warning: webhook not delivered after {delivery.attempts} attempt(s): {delivery.error}; "
                  "the states are stored and exported all the same", file=sys.stderr)
    state = overall_state(report.states)
    if args.json:
        print(dumps({"now": now.isoformat(), "state": state, "states": [s.as_dict() for s in report.states],
                     "prometheus_textfile": textfile,
                     "webhook": None if delivery is None else vars(delivery)}))
    else:
        print(f"monitoring as of {now:%Y-%m-%d}: {state.upper()} ({len(report.states)} checks, "
              f"{sum(s.state == 'alert' for s in shown)} alert(s), {sum(s.state == 'warn' for s in shown)} "
              f"warning(s)); states saved to {engine.url.render_as_string(hide_password=True)}")
        for s in shown[:args.top]:
            print(f"  {s.state.upper():<5} {s.check:<21} {s.model_version}  {s.subject:<24} {s.period}  "
                  f"{s.reason}")
        if len(shown) > args.top:
            print(f"  ... {len(shown) - args.top} more (--top N, or --json)")
        if textfile:
            print(f"Prometheus gauges written to {textfile}")
        if delivery is not None and delivery.delivered:
            print(f"posted {len(shown)} raised state(s) to the webhook")
    if args.fail_on and LEVELS[state] >= LEVELS[args.fail_on]:
        return 3
    return 0


def _add_scores_options(p: argparse.ArgumentParser, *, now: str) -> None:
    """Where the scores come from, which version, the period, the label window and ``--now``."""
    p.add_argument("--scores", metavar="FILE", help="a batch scores file instead of the prediction log")
    p.add_argument("--scores-table", metavar="NAME", help="a batch scores table in --db instead of the log")
    p.add_argument("--version", metavar="V", help="only this model version")
    p.add_argument("--by", choices=("week", "month"), default="month", help="period (default: %(default)s)")
    p.add_argument("--window-days", type=float, metavar="N",
                   help="label window (default: the model's, else params.yaml snapshot.label_window_days)")
    p.add_argument("--now", metavar="DATE", help=now)


def add_monitor_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``leadscore outcomes import`` and ``leadscore monitor {performance,estimate,drift,replay}``."""
    outcomes = commands.add_parser("outcomes", help="import what became of scored leads",
                                   description="Outcomes (converted or not, and when) per lead.")
    sub = outcomes.add_subparsers(dest="outcomes_command", required=True, metavar="SUBCOMMAND")
    p = add_command(sub, "import", _cmd_outcomes_import, "upsert outcomes from a file or a SQL query",
        "Read lead outcomes from a CSV/Parquet/XLSX export or a SQL query and upsert them into\n"
        "the store's outcomes table, one row per lead: importing the same rows twice changes\n"
        "nothing, and a later row for a lead replaces the earlier one. Rows that cannot be read\n"
        "(empty id, an outcome that is not yes/no, a bad date, a conversion time for a lead that\n"
        "did not convert) are written with their reason to a rejects file, never dropped.\n\n"
        "examples:\n"
        "  leadscore outcomes import --input crm_outcomes.csv\n"
        "  leadscore outcomes import --source postgresql+psycopg://crm/db \\\n"
        "      --query \"SELECT id AS lead_id, won AS converted, closed_at AS converted_at FROM deals\"")
    p.add_argument("--input", metavar="FILE", help="outcomes file")
    p.add_argument("--query", metavar="SQL", help="a SELECT (or a table name) run on --source")
    p.add_argument("--source", metavar="URL", help="database to run --query on")
    p.add_argument("--lead-id", default="lead_id", metavar="COL",
                   help="lead id column (default: %(default)s)")
    p.add_argument("--converted", default="converted", metavar="COL",
                   help="outcome column: 1/0, yes/no, true/false, won/lost (default: %(default)s)")
    p.add_argument("--converted-at", default="converted_at", metavar="COL",
                   help="conversion time column, optional (default: %(default)s)")
    p.add_argument("--rejects", metavar="FILE", help="where unreadable rows go (default: INPUT.rejected.csv)")
    add_store_options(p)

    monitor = commands.add_parser("monitor", help="realized performance and drift of the scores",
                                  description="Checks of the models in production, on the store.")
    sub = monitor.add_subparsers(dest="monitor_command", required=True, metavar="SUBCOMMAND")
    p = add_command(sub, "performance", _cmd_performance, "realized performance per version and period",
        "Join each lead's first score per model version to its outcome and measure, per period\n"
        "of scoring: leads, labelled and open, conversion, ROC-AUC with a 95% bootstrap interval,\n"
        "PR-AUC, Brier, ECE, top-decile and top-tier conversion. Label maturity: a conversion\n"
        "inside the label window is a 1 and an explicit negative outcome a 0 at once; a lead\n"
        "with no outcome is open until the window has passed, and only then a 0.\n\n"
        "examples:\n"
        "  leadscore monitor performance --by week\n"
        "  leadscore monitor performance --scores scores.parquet --segment vertical --json")
    _add_scores_options(p, now="judge label maturity as of DATE (default: now)")
    p.add_argument("--segment", metavar="COL", help="also split by this column of the scores")
    add_store_options(p)
    add_params_option(p)
    p = add_command(sub, "estimate", _cmd_estimate, "estimated performance of periods whose labels are open",
        "Estimate each period's conversion, ROC-AUC and top-tier conversion before its labels\n"
        "mature, from the calibrated scores: the open leads' outcomes are drawn from their\n"
        "probabilities (discounted by how long they have gone without converting, using the\n"
        "conversion delays of matured leads) and the final labels enter as they are. The\n"
        "estimate holds while the model stays calibrated; `monitor drift` says when it may not.\n"
        "--backtest checks it: for every period now matured, the estimate made when the period\n"
        "ended (plus --lag-days) against the realized values.\n\n"
        "examples:\n"
        "  leadscore monitor estimate --by week\n"
        "  leadscore monitor estimate --backtest --by week --now 2025-08-31 --json")
    _add_scores_options(p, now="estimate as of DATE (default: now)")
    p.add_argument("--backtest", action="store_true", help="check past estimates against realized values")
    p.add_argument("--lag-days", type=float, default=0.0, metavar="N",
                   help="backtest: estimate N days after each period ended (default: %(default)s)")
    p.add_argument("--simulations", type=int, default=400, metavar="N",
                   help="label draws per period (default: %(default)s)")
    add_store_options(p)
    add_params_option(p)
    p = add_command(sub, "check", _cmd_check, "every check, its alert states, Prometheus and webhook",
        "Run drift, realized and estimated performance for every logged model version and\n"
        "judge each version's latest period: ok, warn or alert with a reason, per feature\n"
        "(PSI), for the score, and for ROC-AUC against the model's held-out value (realized,\n"
        "or estimated while labels are open; monitoring.auc_drop_warn/alert in params.yaml).\n"
        "The states replace the store's monitor_states table, which `leadscore serve` exports\n"
        "on /metrics as leadscore_monitor_state (0 ok, 1 warn, 2 alert). --prometheus-textfile\n"
        "writes the same gauges for node_exporter; --webhook posts the raised states as\n"
        "Slack-compatible JSON, retried; a failing webhook is reported, never fatal.\n\n"
        "exit status: 0, or 3 when --fail-on is given and the worst state reaches it\n\n"
        "examples:\n"
        "  leadscore monitor check --prometheus-textfile /var/lib/node_exporter/leadscore.prom\n"
        "  leadscore monitor check --webhook https://hooks.slack.com/services/... --fail-on alert")
    p.add_argument("--version", metavar="V", help="only this model version")
    p.add_argument("--since", metavar="DATE", help="only leads scored since DATE")
    p.add_argument("--by", choices=("week", "month"), default="week", help="period (default: %(default)s)")
    p.add_argument("--now", metavar="DATE", help="check as of DATE (default: now)")
    p.add_argument("--window-days", type=float, metavar="N",
                   help="label window (default: params.yaml snapshot.label_window_days)")
    p.add_argument("--prometheus-textfile", metavar="PATH", help="also write the gauges to PATH (.prom)")
    p.add_argument("--webhook", metavar="URL", help="post raised states here (Slack-compatible JSON)")
    p.add_argument("--webhook-attempts", type=int, default=4, metavar="N",
                   help="tries before giving up on the webhook (default: %(default)s)")
    p.add_argument("--fail-on", choices=("warn", "alert"), help="exit with status 3 from this state")
    p.add_argument("--simulations", type=int, default=400, metavar="N",
                   help="label draws per period for the estimate (default: %(default)s)")
    p.add_argument("--top", type=int, default=15, metavar="N",
                   help="raised states shown (default: %(default)s)")
    add_store_options(p)
    add_params_option(p)
    p = add_command(sub, "drift", _cmd_drift, "drift of the scored leads against the training profile",
        "Compare each period's scored leads with the profile saved in the model at training time:\n"
        "per feature the PSI (deciles for numbers, categories plus never-seen ones, missing\n"
        "values), KS for numbers, the share of unseen categories; and the score's PSI and\n"
        "predicted-positive rate. States by PSI: ok, warn (>= monitoring.psi_warn), alert\n"
        "(>= monitoring.psi_alert); periods under monitoring.min_rows leads are not judged.\n\n"
        "examples:\n"
        "  leadscore monitor drift                                  # the prediction log\n"
        "  leadscore monitor drift --input new_leads.parquet --since 2025-05-01 --json")
    p.add_argument("--input", metavar="FILE", help="scored leads (raw rows) instead of the prediction log")
    p.add_argument("--time-column", default="created_at", metavar="COL",
                   help="periods of --input rows by this column (default: %(default)s)")
    p.add_argument("--version", metavar="V", help="model version (default: each logged one; --input: active)")
    p.add_argument("--since", metavar="DATE", help="only leads scored (or created, with --input) since DATE")
    p.add_argument("--by", choices=("week", "month"), default="month", help="period (default: %(default)s)")
    p.add_argument("--top", type=int, default=5, metavar="N", help="drifted features shown per period")
    add_store_options(p)
    add_params_option(p)
    add_replay_command(sub)
