"""``leadscore <command>``: the demo data, the ``dvc repro`` stages, and fit/score on your own table.

Every command has ``--help``. User errors end with one line on stderr and exit code 2, no traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from leadscore import __version__
from leadscore.cli.models import add_models_command
from leadscore.cli.serve import add_serve_command
from leadscore.core.exceptions import ConfigError, LeadscoreError

log = logging.getLogger("leadscore")

Handler = Callable[[argparse.Namespace], None]
EPILOG = "Run `leadscore COMMAND --help` for the options of one command."


def _params(args: argparse.Namespace):  # noqa: ANN202 - lazy import keeps --help fast
    from leadscore.core.config import load_params

    return load_params(args.params)


def _add(commands: argparse._SubParsersAction, name: str, handler: Handler, summary: str,
         description: str) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=summary, description=description,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(func=handler)
    return parser


def _with_params(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default="params.yaml", metavar="FILE",
                        help="settings file (default: %(default)s)")


# --- demo data -------------------------------------------------------------------------------------

def _cmd_demo(args: argparse.Namespace) -> None:
    from leadscore.core.hashing import dvc_dir_md5, recorded_md5
    from leadscore.data.demo import generate_crm, write_crm

    out = Path(args.out)
    if args.if_missing and (out / "raw").is_dir() and any((out / "raw").iterdir()):
        print(f"{out}/raw exists: leaving your data as it is")
    else:
        demo = _params(args).demo if Path(args.params).exists() else None
        n_leads = args.n_leads or (demo.n_leads if demo else 50_000)
        seed = args.seed if args.seed is not None else (demo.seed if demo else 42)
        start = args.start or (demo.start if demo else "2024-01-01")
        months = args.months or (demo.months if demo else 20)
        began = time.perf_counter()
        data = generate_crm(n_leads=n_leads, seed=seed, start=start, months=months)
        paths = write_crm(data, out)
        print(f"wrote {len(paths)} files for {n_leads:,} leads to {out} "
              f"in {time.perf_counter() - began:.1f} s")
    if args.verify:
        expected, actual = recorded_md5(args.verify), dvc_dir_md5(out)
        if expected != actual:
            raise LeadscoreError(
                f"{out} does not match {args.verify} (md5 {actual} != {expected}); if you changed the "
                f"demo settings or brought your own data, record it with `dvc add {out}`"
            )
        print(f"{out} matches {args.verify} ({expected})")


def _add_demo(commands: argparse._SubParsersAction) -> None:
    p = _add(commands, "demo", _cmd_demo, "generate the demo CRM extract (deterministic)",
             "Write the seeded demo CRM extract: raw/leads, raw/activities, raw/outcomes (Parquet)\n"
             "and truth/true_probability (the latent conversion probability, never a feature).\n"
             "The same settings always give byte-identical files, so a fresh clone reproduces\n"
             "exactly what data.dvc records. Settings default to the `demo` section of params.yaml.")
    p.add_argument("--out", default="data", help="output folder (default: %(default)s)")
    p.add_argument("--n-leads", type=int, help="number of leads (default: params.yaml, 50000)")
    p.add_argument("--seed", type=int, help="random seed (default: params.yaml, 42)")
    p.add_argument("--start", help="first creation date, YYYY-MM-DD (default: params.yaml)")
    p.add_argument("--months", type=int, help="months of history (default: params.yaml, 20)")
    p.add_argument("--if-missing", action="store_true",
                   help="do nothing when OUT/raw already holds files (never overwrite your data)")
    p.add_argument("--verify", metavar="DVC_FILE",
                   help="fail unless OUT matches the hash recorded in this .dvc file")
    _with_params(p)


# --- pipeline stages -------------------------------------------------------------------------------

def _cmd_features(args: argparse.Namespace) -> None:
    from leadscore.stages.features import build_features

    snap = build_features(args.data, args.out, _params(args))
    counts = snap["status"].value_counts().to_dict()
    print(f"{len(snap):,} lead snapshots -> {args.out} ({counts})")


def _cmd_split(args: argparse.Namespace) -> None:
    from leadscore.stages.split import write_split

    summary = write_split(args.snapshots, args.out, _params(args).test_months)
    for name, part in summary.items():
        print(f"{name:>5}: {part['rows']:>7,} leads created {part['created_from'][:10]} .. "
              f"{part['created_to'][:10]}, conversion {part['conversion_rate']}")


def _cmd_train(args: argparse.Namespace) -> None:
    from leadscore.stages.train import train_stage

    champion = train_stage(args.train, args.out, _params(args), progress=not args.quiet)
    selection = champion.selection
    print(selection.table.round(4).to_string())
    print(f"champion: {selection.champion} {selection.weights}, calibration: "
          f"{selection.calibration.method}, {champion.threshold.detail}; "
          f"selection took {selection.seconds:.0f} s -> {args.out}")


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from leadscore.stages.evaluate import evaluate_models

    params = _params(args)
    metrics = evaluate_models(
        args.models, args.test, args.out, truth_path=args.truth,
        snapshot_days=params.snapshot.snapshot_days,
        label_window_days=params.snapshot.label_window_days, bins=params.calibration_bins)
    Path(args.metrics).parent.mkdir(parents=True, exist_ok=True)
    Path(args.metrics).write_text(json.dumps(metrics, indent=2) + "\n")
    for name, m in metrics["models"].items():
        print(f"{name:>13}: ROC-AUC {m['roc_auc']:.4f}  PR-AUC {m['pr_auc']:.4f}  "
              f"Brier {m['brier']:.4f}  log loss {m['log_loss']:.4f}  ECE {m['ece']:.4f}")


def _cmd_export(args: argparse.Namespace) -> None:
    from leadscore.artifacts.registry import Registry
    from leadscore.stages.export import export_model

    out = export_model(args.model, args.metrics, args.data, args.out)
    registry = Registry(args.registry or Registry.default_root())
    version = registry.register(out, activate=True)
    print(f"exported {args.model} -> {out}; registered as version {version} in {registry.root} (active)")


def _add_stages(commands: argparse._SubParsersAction) -> None:
    p = _add(commands, "features", _cmd_features, "point-in-time lead snapshots from CRM tables",
             "Build one row per lead as of created_at + snapshot_days, from its profile and the\n"
             "activities strictly before that time, with its label and status (closed/open/\n"
             "converted_before). Post-outcome columns in features.exclude are never used.")
    p.add_argument("--data", default="data/raw", help="folder with leads/activities/outcomes")
    p.add_argument("--out", default="artifacts/features/snapshots.parquet")
    _with_params(p)
    p = _add(commands, "split", _cmd_split, "split snapshots by time into train/test/open",
             "Train = closed leads before the last split.test_months; test = the most recent\n"
             "closed leads; open = leads whose label window has not closed (scored, never labels).")
    p.add_argument("--snapshots", default="artifacts/features/snapshots.parquet")
    p.add_argument("--out", default="artifacts/split")
    _with_params(p)
    p = _add(commands, "train", _cmd_train, "select, tune, combine and calibrate the champion",
             "On the training period only: leakage guard, every model_comparison.candidates model\n"
             "cross-validated on expanding-window folds (Optuna-tuned within the time budget),\n"
             "a weighted ensemble kept only if it beats the best single model, calibration chosen\n"
             "on out-of-fold predictions, per-segment models where they win, and the business\n"
             "threshold. Writes OUT/champion, OUT/candidates/<name> and OUT/selection.")
    p.add_argument("--train", default="artifacts/split/train.parquet")
    p.add_argument("--out", default="artifacts/models")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _with_params(p)
    p = _add(commands, "evaluate", _cmd_evaluate, "test-period metrics and plot data",
             "Score the untouched test period once with the champion and, for comparison, every\n"
             "candidate; write metrics (ROC-AUC, PR-AUC, Brier, log loss, ECE, lift, precision/\n"
             "recall/F1 at the business threshold) and ROC/PR/calibration data for the champion.")
    p.add_argument("--models", default="artifacts/models")
    p.add_argument("--test", default="artifacts/split/test.parquet")
    p.add_argument("--truth", default="data/truth/true_probability.parquet",
                   help="demo only: true probabilities to compare with (skipped if absent)")
    p.add_argument("--out", default="reports/evaluate")
    p.add_argument("--metrics", default="reports/metrics.json")
    _with_params(p)
    p = _add(commands, "export", _cmd_export, "package the champion with metrics and data hash",
             "Write the champion bundle with its test metrics and the raw-data fingerprint, then\n"
             "register it in the model registry as a new version and activate it.")
    p.add_argument("--model", default="artifacts/models/champion")
    p.add_argument("--metrics", default="reports/metrics.json")
    p.add_argument("--data", default="data/raw")
    p.add_argument("--out", default="artifacts/export")
    p.add_argument("--registry", metavar="PATH",
                   help="model registry to register and activate the export in "
                        "(default: $LEADSCORE_REGISTRY or ./registry)")


# --- your own flat table ---------------------------------------------------------------------------

def _cmd_fit(args: argparse.Namespace) -> None:
    from leadscore.artifacts.bundle import save_bundle
    from leadscore.core.config import DEFAULT_PLACEHOLDERS
    from leadscore.data.tables import read_table
    from leadscore.training.fit import fit_table

    frame = read_table(args.data)
    placeholders = DEFAULT_PLACEHOLDERS if args.placeholders is None else tuple(
        p for p in args.placeholders.split(","))
    result = fit_table(frame, target=args.target, id_column=args.id, time_column=args.time,
                       drop=args.drop, placeholders=placeholders, candidates=args.candidates,
                       time_budget=args.time_budget, n_trials=args.trials, metric=args.metric,
                       allow_leaky=args.allow_leaky, segment=args.segment, test_size=args.test_size,
                       seed=args.seed, refit=not args.no_refit, progress=not args.quiet)
    result.bundle.metadata["source_file"] = str(args.data)
    save_bundle(result.bundle, args.out)
    schema, meta = result.bundle.schema, result.bundle.metadata
    print(f"{len(frame):,} rows, {len(schema.columns)} feature columns; validation: {result.holdout}")
    for name, reason in schema.dropped.items():
        print(f"  column {name!r}: {reason}")
    print("candidates (out-of-fold on the training part):")
    for name, m in sorted(result.validation.items(), key=lambda kv: -kv[1]["roc_auc"]):
        if name != "champion":
            print(f"  {name:>13}: ROC-AUC {m['roc_auc']:.4f}  PR-AUC {m['pr_auc']:.4f}  "
                  f"Brier {m['brier']:.4f}  ECE {m['ece']:.4f}")
    m = result.validation["champion"]
    print(f"champion {result.chosen} {meta['weights']}, calibration {meta['calibration']['method']}:")
    print(f"  validation ROC-AUC {m['roc_auc']:.4f}  PR-AUC {m['pr_auc']:.4f}  Brier {m['brier']:.4f}  "
          f"log loss {m['log_loss']:.4f}  ECE {m['ece']:.4f}")
    print(f"  {meta['threshold']['detail']}")
    print(f"model saved to {args.out} ({meta['fit_seconds']:.0f} s)")


def _cmd_score(args: argparse.Namespace) -> None:
    from leadscore.scoring.batch import BatchOptions, Source, crm_source, open_sink, open_source, run_batch
    from leadscore.scoring.scorer import Scorer

    scorer = Scorer.load(args.model, registry=args.registry, allow_missing=args.allow_missing)
    params = _params(args) if (args.crm or args.segment) and Path(args.params).exists() else None
    options = BatchOptions(
        reasons=args.reasons, chunk_size=args.chunk_size, since_days=args.since, segment=args.segment,
        segment_column=args.segment_column or (params.segments.column if params else None),
        incremental=args.incremental, refresh_all=args.refresh_all, on_bad_row=args.on_bad_row,
        progress=not args.quiet)
    source: Source
    if args.engine == "dask":
        from leadscore.scoring.dask_engine import score_parquet_dask

        summary = score_parquet_dask(scorer, args.input, args.output, options, scheduler=args.scheduler)
    else:
        if args.crm:
            source = crm_source(args.crm, _params(args), as_of=args.as_of)
        elif args.input:
            source = open_source(args.input, query=args.query, order_by=scorer.schema.id_column)
        else:
            raise ConfigError("give --input FILE|URL or --crm DIR")
        summary = run_batch(scorer, source, open_sink(args.output, table=args.table), options)
    print(f"scored {summary.rows_scored:,} of {summary.rows_in:,} leads with model {scorer.version} -> "
          f"{args.output} in {summary.seconds:.1f} s ({summary.rows_per_second:,.0f} leads/s)")
    notes = {"filtered out": summary.rows_filtered, "already scored": summary.rows_already_scored,
             "chunk(s) resumed from an earlier run": summary.chunks_resumed}
    if any(notes.values()):
        print("  " + "; ".join(f"{n:,} {what}" for what, n in notes.items() if n))
    if summary.rows_bad:
        first = summary.errors[0]
        print(f"  {summary.rows_bad:,} bad row(s) skipped, e.g. lead {first['lead_id']}: {first['reason']} "
              "(all in the run record)", file=sys.stderr)


def _add_flat(commands: argparse._SubParsersAction) -> None:
    p = _add(commands, "fit", _cmd_fit, "fit a model on your own table (one row per lead)",
             "Fit a lead-conversion model on a CSV/TSV/Parquet/XLSX export with one row per lead.\n"
             "Column types are inferred (numbers written as text, dates, e-mails, categories);\n"
             "placeholders such as 'Select', 'N/A', '' are missing values; identifier-like and\n"
             "free-text columns only count as filled/empty. The target may be 0/1, yes/no or\n"
             "true/false; rows with an empty target (open leads) are left out. Validation uses the\n"
             "most recent rows when --time is given, else a stratified sample. On the other rows:\n"
             "a leakage guard (stops on columns that look filled after the outcome), every candidate\n"
             "on out-of-fold predictions (Optuna-tuned within --time-budget), a weighted ensemble\n"
             "if it beats the best single model, calibration, and the business threshold; the\n"
             "champion is then refitted on all rows.\n\n"
             "example: leadscore fit --data leads.csv --target converted --id lead_id \\\n"
             "             --time created_at --drop sales_status --out models/mine")
    p.add_argument("--data", required=True, metavar="FILE", help="training table")
    p.add_argument("--target", required=True, metavar="COL", help="the 0/1 outcome column")
    p.add_argument("--id", metavar="COL", help="unique lead id column, copied to the scores")
    p.add_argument("--time", metavar="COL",
                   help="creation time column: validate on the most recent leads")
    p.add_argument("--drop", nargs="*", default=[], metavar="COL",
                   help="columns never to use, e.g. post-outcome fields such as a sales status")
    p.add_argument("--candidates", nargs="+", metavar="NAME",
                   default=["logistic", "lightgbm", "xgboost", "catboost"],
                   help="models to compare: logistic, lightgbm, xgboost, catboost, random_forest "
                        "(default: %(default)s)")
    p.add_argument("--time-budget", type=float, default=0, metavar="SECONDS",
                   help="Optuna tuning time shared by the candidates by cost (default: 0 = no tuning)")
    p.add_argument("--trials", type=int, default=0, help="Optuna trials per candidate (default: 0)")
    p.add_argument("--metric", choices=["roc_auc", "log_loss", "brier"], default="roc_auc",
                   help="the champion is chosen on validation by this (default: %(default)s)")
    p.add_argument("--allow-leaky", nargs="*", default=[], metavar="COL",
                   help="columns the leakage guard flagged that ARE known at scoring time")
    p.add_argument("--segment", metavar="COL",
                   help="categorical column for per-segment models (used where they beat the global one)")
    p.add_argument("--placeholders", metavar="LIST",
                   help="comma-separated values meaning missing (default: '',select,unknown,n/a,...)")
    p.add_argument("--test-size", type=float, default=0.2, help="validation share (default: 0.2)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--no-refit", action="store_true",
                   help="keep the model fitted without the validation rows")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.add_argument("--out", required=True, metavar="DIR", help="model folder to write")
    p = _add(commands, "score", _cmd_score, "score leads from a file, a database or the CRM tables",
             "Score leads with a registered model (default: the active version) or a model folder.\n"
             "Every lead gets: lead_id, probability (calibrated), score (0-100), tier, action,\n"
             "confidence (0-1: member agreement x filled usual fields), reasons (JSON: the top K\n"
             "positive and negative contributions in score points, in plain words), model_version and\n"
             "scored_at (UTC).\n\n"
             "Input: a CSV/TSV/Parquet/XLSX file with one row per lead, a database (SQLAlchemy URL or\n"
             ".db/.sqlite file, with --query TABLE or --query 'SELECT ...'), or --crm DIR: the demo\n"
             "CRM tables (leads/activities/outcomes), from which leads without an outcome are\n"
             "snapshotted as of --as-of (default: the end of the data) with the training feature code.\n"
             "Output: .csv/.parquet (written only when complete) or a database table (upsert keyed\n"
             "by lead_id and model_version, one transaction per chunk, plus a run record in\n"
             "TABLE_runs). A run that stopped resumes where it stopped when run again.\n"
             "Bad rows (no id, duplicated id, a number that is not a number or not finite) are\n"
             "reported with their id and skipped, or stop the run with --on-bad-row fail.\n\n"
             "examples:\n"
             "  leadscore score --input new_leads.csv --output scores.parquet\n"
             "  leadscore score --crm data/raw --output sqlite:///scores.db --since 30 --reasons 3\n"
             "  leadscore score --input postgresql+psycopg://u@host/crm --query leads \\\n"
             "                  --output postgresql+psycopg://u@host/crm --incremental\n"
             "  leadscore score --engine dask --input leads_parquet/ --output scores_parquet/")
    p.add_argument("--model", metavar="DIR|VERSION",
                   help="model folder (from fit/export) or registry version (default: the active one)")
    p.add_argument("--registry", metavar="PATH",
                   help="model registry (default: $LEADSCORE_REGISTRY or ./registry)")
    p.add_argument("--input", metavar="FILE|URL", help="leads to score: a file or a database")
    p.add_argument("--query", metavar="TABLE|SQL", help="table or SELECT for a database --input")
    p.add_argument("--crm", metavar="DIR", help="score open leads from the CRM tables in DIR")
    p.add_argument("--as-of", metavar="TIME", help="with --crm: snapshot time (default: end of the data)")
    p.add_argument("--output", required=True, metavar="FILE|URL",
                   help=".csv/.parquet file, or a database URL / .db file")
    p.add_argument("--table", default="lead_scores",
                   help="output table for a database --output (default: %(default)s)")
    p.add_argument("--reasons", type=int, default=3, metavar="K",
                   help="top K positive and K negative reasons per lead; 0 = none, fastest (default: 3)")
    p.add_argument("--since", type=float, metavar="DAYS", help="only leads created in the last DAYS days")
    p.add_argument("--segment", metavar="VALUE", help="only leads of this segment (e.g. a vertical)")
    p.add_argument("--segment-column", metavar="COL",
                   help="column --segment filters on (default: segments.column of params.yaml)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--incremental", action="store_true",
                      help="only leads without a score from this model version in the output")
    mode.add_argument("--refresh-all", action="store_true",
                      help="start over: rescore every lead, even if an earlier run stopped midway")
    p.add_argument("--on-bad-row", choices=["skip", "fail"], default="skip",
                   help="skip and report a bad row, or stop the run (default: %(default)s)")
    p.add_argument("--allow-missing", action="store_true",
                   help="score even if required columns are absent (treated as unknown)")
    p.add_argument("--chunk-size", type=int, default=50_000, help="leads per chunk/commit (default: 50000)")
    p.add_argument("--engine", choices=["pandas", "dask"], default="pandas",
                   help="dask: score partitioned Parquet on a Dask cluster (default: %(default)s)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="with --engine dask: scheduler address (default: a LocalCluster on this machine)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _with_params(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leadscore", epilog=EPILOG,
        description="Lead scoring from CRM history: calibrated conversion probabilities and scores.")
    parser.add_argument("--version", action="version", version=f"leadscore {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_demo, _add_stages, _add_flat, add_models_command, add_serve_command):
        add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=max(logging.DEBUG, logging.WARNING - 10 * args.verbose),
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        args.func(args)
    except LeadscoreError as exc:
        print(f"leadscore {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("leadscore: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
