"""``leadscore demo`` and the DVC stage commands: features, split, train, evaluate, export."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from leadscore.cli.common import add_command, add_params_option, load_params_arg
from leadscore.core.exceptions import LeadscoreError

if TYPE_CHECKING:
    from leadscore.demo import CRMData


def _cmd_demo(args: argparse.Namespace) -> None:
    from leadscore.core.hashing import dvc_dir_md5, recorded_md5

    out = Path(args.out or "data") if args.out or not args.db else None
    if out is not None and args.if_missing and (out / "raw").is_dir() and any((out / "raw").iterdir()):
        print(f"{out}/raw exists: leaving your data as it is")
    else:
        _generate_demo(args, out)
    if args.verify and out is not None:
        expected, actual = recorded_md5(args.verify), dvc_dir_md5(out)
        if expected != actual:
            raise LeadscoreError(
                f"{out} does not match {args.verify} (md5 {actual} != {expected}); if you changed the "
                f"demo settings or brought your own data, record it with `dvc add {out}`"
            )
        print(f"{out} matches {args.verify} ({expected})")


def _generate_demo(args: argparse.Namespace, out: Path | None) -> None:
    from leadscore.core.config import DemoParams
    from leadscore.demo import generate_crm, write_crm

    demo = load_params_arg(args).demo if Path(args.params).exists() else DemoParams()
    n_leads = args.n_leads or demo.n_leads
    seed = demo.seed if args.seed is None else args.seed
    start = args.start or demo.start
    months = args.months or demo.months
    began = time.perf_counter()
    data = generate_crm(n_leads=n_leads, seed=seed, start=start, months=months)
    if out is not None:
        paths = write_crm(data, out)
        print(f"wrote {len(paths)} files for {n_leads:,} leads to {out} "
              f"in {time.perf_counter() - began:.1f} s")
    if args.db:
        _write_demo_db(data, args.db, replace=args.replace)


def _write_demo_db(data: CRMData, url: str, *, replace: bool) -> None:
    import sys

    from leadscore.core.database import safe_url
    from leadscore.demo.database import write_crm_database

    began = time.perf_counter()
    big = len(data.activities) > 500_000

    def progress(table: str, done: int, total: int) -> None:
        if big and (done == total or done % 1_000_000 < 50_000):
            print(f"  {table}: {done:,} / {total:,} rows ({time.perf_counter() - began:.0f} s)",
                  file=sys.stderr, flush=True)

    counts = write_crm_database(data, url, if_exists="replace" if replace else "fail", progress=progress)
    rows = ", ".join(f"{name} {count:,}" for name, count in counts.items())
    print(f"wrote the demo CRM to {safe_url(url)} ({rows} rows) in {time.perf_counter() - began:.1f} s")


def add_demo_command(commands: argparse._SubParsersAction) -> None:
    p = add_command(commands, "demo", _cmd_demo, "generate the demo CRM extract (deterministic)",
             "Write the seeded demo CRM extract: raw/leads, raw/activities, raw/outcomes (Parquet)\n"
             "and truth/true_probability (the latent conversion probability, never a feature).\n"
             "The same settings always give byte-identical files, so a fresh clone reproduces\n"
             "exactly what data.dvc records. Settings default to the `demo` section of params.yaml.\n"
             "With --db the CRM tables (leads, activities, outcomes; keys, indexes, change columns)\n"
             "are written into a database instead (files too only if --out is given).\n\n"
             "examples:\n"
             "  leadscore demo --out data\n"
             "  leadscore demo --db crm.db --n-leads 10000\n"
             "  leadscore demo --db postgresql+psycopg://postgres@127.0.0.1:5432/crm --replace\n"
             "  leadscore demo --db mysql+pymysql://root@127.0.0.1:3306/crm --n-leads 1000000")
    p.add_argument("--out", default=None, help="output folder (default: data; with --db: no files)")
    p.add_argument("--db", metavar="URL",
                   help="write the CRM tables into this database: a SQLite path (crm.db) or a URL "
                        "(sqlite:///, postgresql+psycopg://, mysql+pymysql://)")
    p.add_argument("--replace", action="store_true",
                   help="with --db: drop and rewrite existing CRM tables (default: refuse)")
    p.add_argument("--n-leads", type=int, help="number of leads (default: params.yaml, 50000)")
    p.add_argument("--seed", type=int, help="random seed (default: params.yaml, 42)")
    p.add_argument("--start", help="first creation date, YYYY-MM-DD (default: params.yaml)")
    p.add_argument("--months", type=int, help="months of history (default: params.yaml, 20)")
    p.add_argument("--if-missing", action="store_true",
                   help="do nothing when OUT/raw already holds files (never overwrite your data)")
    p.add_argument("--verify", metavar="DVC_FILE",
                   help="fail unless OUT matches the hash recorded in this .dvc file")
    add_params_option(p)


def _cmd_extract(args: argparse.Namespace) -> None:
    from leadscore.stages.extract import extract_crm, write_manifest

    began = time.perf_counter()
    manifest = extract_crm(args.source, args.out, raw_dir=args.raw, mapping=args.mapping or None)
    if args.manifest:
        write_manifest(manifest, args.manifest)
    counts = ", ".join(f"{name} {info['rows']:,} (newest {info['newest'] or 'none'})"
                       for name, info in manifest["tables"].items())
    print(f"extracted {manifest['source']} -> {args.out}: {counts} in {time.perf_counter() - began:.1f} s")


def _cmd_features(args: argparse.Namespace) -> None:
    from leadscore.stages.features import build_features

    snap = build_features(args.data, args.out, load_params_arg(args))
    counts = snap["status"].value_counts().to_dict()
    print(f"{len(snap):,} lead snapshots -> {args.out} ({counts})")


def _cmd_split(args: argparse.Namespace) -> None:
    from leadscore.stages.split import write_split

    summary = write_split(args.snapshots, args.out, load_params_arg(args).test_months)
    for name, part in summary.items():
        print(f"{name:>5}: {part['rows']:>7,} leads created {part['created_from'][:10]} .. "
              f"{part['created_to'][:10]}, conversion {part['conversion_rate']}")


def _cmd_train(args: argparse.Namespace) -> None:
    from leadscore.stages.train import train_stage

    champion = train_stage(args.train, args.out, load_params_arg(args), progress=not args.quiet)
    selection = champion.selection
    print(selection.table.round(4).to_string())
    print(f"champion: {selection.champion} {selection.weights}, calibration: "
          f"{selection.calibration.method}, {champion.threshold.detail}; "
          f"selection took {selection.seconds:.0f} s -> {args.out}")


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from leadscore.stages.evaluate import evaluate_models

    params = load_params_arg(args)
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

    out = export_model(args.model, args.metrics, args.data, args.out, args.predictions)
    registry = Registry(args.registry or Registry.default_root())
    version = registry.register(out, activate=True)
    print(f"exported {args.model} -> {out}; registered as version {version} in {registry.root} (active)")


def add_stage_commands(commands: argparse._SubParsersAction) -> None:
    p = add_command(commands, "extract", _cmd_extract, "the CRM tables the pipeline reads, as Parquet",
             "Write leads, activities and outcomes (Parquet) to OUT from the CRM source of\n"
             "params.yaml's crm section: `files` (the tables of --raw, copied byte for byte) or a\n"
             "database (SQLAlchemy URL, or env:NAME for a URL kept in an environment variable) read\n"
             "through --mapping (default: the demo schema). Rows are sorted, so the same database\n"
             "content gives the same bytes and `dvc repro` reruns what follows only when it changed.\n"
             "--manifest records each table's row count and newest timestamp.\n\n"
             "examples:\n"
             "  leadscore extract --source files --raw data/raw --out artifacts/extract/raw\n"
             "  LEADSCORE_CRM_URL=postgresql+psycopg://u@host/crm \\\n"
             "    leadscore extract --source env:LEADSCORE_CRM_URL --mapping mapping.yaml --out crm/")
    p.add_argument("--source", default="files", help="files, a database URL or env:NAME (default: files)")
    p.add_argument("--mapping", default="", metavar="FILE",
                   help="mapping YAML of a database source (default: the demo schema)")
    p.add_argument("--raw", default="data/raw", help="the tables of a files source (default: %(default)s)")
    p.add_argument("--out", default="artifacts/extract/raw", help="output folder (default: %(default)s)")
    p.add_argument("--manifest", metavar="FILE", help="write row counts and newest timestamps here (JSON)")
    p = add_command(commands, "features", _cmd_features, "point-in-time lead snapshots from CRM tables",
             "Build one row per lead as of created_at + snapshot_days, from its profile and the\n"
             "activities strictly before that time, with its label and status (closed/open/\n"
             "converted_before). Post-outcome columns in features.exclude are never used.")
    p.add_argument("--data", default="data/raw", help="folder with leads/activities/outcomes")
    p.add_argument("--out", default="artifacts/features/snapshots.parquet")
    add_params_option(p)
    p = add_command(commands, "split", _cmd_split, "split snapshots by time into train/test/open",
             "Train = closed leads before the last split.test_months; test = the most recent\n"
             "closed leads; open = leads whose label window has not closed (scored, never labels).")
    p.add_argument("--snapshots", default="artifacts/features/snapshots.parquet")
    p.add_argument("--out", default="artifacts/split")
    add_params_option(p)
    p = add_command(commands, "train", _cmd_train, "select, tune, combine and calibrate the champion",
             "On the training period only: leakage guard, every model_comparison.candidates model\n"
             "cross-validated on expanding-window folds (Optuna-tuned within the time budget),\n"
             "a weighted ensemble kept only if it beats the best single model, calibration chosen\n"
             "on out-of-fold predictions, per-segment models where they win, and the business\n"
             "threshold. Writes OUT/champion, OUT/candidates/<name> and OUT/selection.")
    p.add_argument("--train", default="artifacts/split/train.parquet")
    p.add_argument("--out", default="artifacts/models")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_params_option(p)
    p = add_command(commands, "evaluate", _cmd_evaluate, "test-period metrics and plot data",
             "Score the untouched test period once with the champion and, for comparison, every\n"
             "candidate; write metrics (ROC-AUC, PR-AUC, Brier, log loss, ECE, lift, precision/\n"
             "recall/F1 at the business threshold) and ROC/PR/calibration data for the champion.")
    p.add_argument("--models", default="artifacts/models")
    p.add_argument("--test", default="artifacts/split/test.parquet")
    p.add_argument("--truth", default="data/truth/true_probability.parquet",
                   help="demo only: true probabilities to compare with (skipped if absent)")
    p.add_argument("--out", default="reports/evaluate")
    p.add_argument("--metrics", default="reports/metrics.json")
    add_params_option(p)
    p = add_command(commands, "export", _cmd_export, "package the champion with metrics and data hash",
             "Write the champion bundle with its test metrics, its test-period summary and the\n"
             "raw-data fingerprint, then register it in the model registry as a new version (with\n"
             "its model card) and activate it.")
    p.add_argument("--model", default="artifacts/models/champion")
    p.add_argument("--metrics", default="reports/metrics.json")
    p.add_argument("--predictions", metavar="FILE",
                   help="the evaluate stage's test predictions: adds the test-period summary (metrics "
                        "with bootstrap intervals, calibration, tiers, segments) that the model card shows")
    p.add_argument("--data", default="data/raw")
    p.add_argument("--out", default="artifacts/export")
    p.add_argument("--registry", metavar="PATH",
                   help="model registry to register and activate the export in "
                        "(default: $LEADSCORE_REGISTRY or ./registry)")
