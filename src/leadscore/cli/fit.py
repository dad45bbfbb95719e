"""``leadscore fit``: a model from your own table, one row per lead."""

from __future__ import annotations

import argparse
from pathlib import Path

from leadscore.cli.common import add_command
from leadscore.core.exceptions import ConfigError


def _cmd_fit(args: argparse.Namespace) -> None:
    from leadscore.artifacts.bundle import save_bundle
    from leadscore.core.config import load_params
    from leadscore.data.tables import read_table
    from leadscore.training.fit import fit_table

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file: give a folder for the model (checked before fitting)")
    frame = read_table(args.data)
    placeholders = None if args.placeholders is None else tuple(args.placeholders.split(","))
    result = fit_table(frame, target=args.target, id_column=args.id, time_column=args.time,
                       params=load_params(args.params) if args.params else None,
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


def add_fit_command(commands: argparse._SubParsersAction) -> None:
    """Add ``leadscore fit`` to ``commands``."""
    p = add_command(commands, "fit", _cmd_fit, "fit a model on your own table (one row per lead)",
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
    p.add_argument("--params", metavar="FILE",
                   help="settings in the params.yaml layout (model_comparison, train, decision, leakage, "
                        "segments); default: the package defaults, the same as the demo's params.yaml "
                        "minus its demo-specific rules and depth caps")
    p.add_argument("--candidates", nargs="+", metavar="NAME",
                   help="models to compare: logistic, lightgbm, xgboost, catboost, random_forest, rules "
                        "(default: logistic lightgbm xgboost catboost)")
    p.add_argument("--time-budget", type=float, metavar="SECONDS",
                   help="Optuna tuning time shared by the candidates by cost (default: 0 = no tuning)")
    p.add_argument("--trials", type=int, help="Optuna trials per candidate (default: 0)")
    p.add_argument("--metric", metavar="NAME",
                   help="roc_auc, log_loss or brier: the champion is chosen by it (default: roc_auc)")
    p.add_argument("--allow-leaky", nargs="*", default=[], metavar="COL",
                   help="columns the leakage guard flagged that ARE known at scoring time")
    p.add_argument("--segment", metavar="COL",
                   help="categorical column for per-segment models (used where they beat the global one)")
    p.add_argument("--placeholders", metavar="LIST",
                   help="comma-separated values meaning missing (default: '',select,unknown,n/a,...)")
    p.add_argument("--test-size", type=float, default=0.2, help="validation share (default: 0.2)")
    p.add_argument("--seed", type=int, help="random seed (default: 42)")
    p.add_argument("--no-refit", action="store_true",
                   help="keep the model fitted without the validation rows")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.add_argument("--out", required=True, metavar="DIR", help="model folder to write")
