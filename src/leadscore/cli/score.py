"""``leadscore score``: score leads from a file, a database or the CRM tables into a file or a database."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from leadscore.artifacts.paths import LOG_TABLE, OUTCOMES_TABLE
from leadscore.cli.common import CRM_MAP_HELP, add_command, add_params_option, load_params_arg
from leadscore.core.exceptions import ConfigError

if TYPE_CHECKING:
    from leadscore.experiments.arms import ExperimentHook
    from leadscore.lifecycle.shadow import BatchShadow


def _cmd_score(args: argparse.Namespace) -> None:
    from leadscore.core.database import safe_url
    from leadscore.scoring.batch import BatchOptions, Source, crm_source, open_sink, open_source, run_batch
    from leadscore.scoring.scorer import Scorer
    from leadscore.scoring.sinks import check_not_input

    check_not_input(args.output, table=args.table, input_=args.input, query=args.query)

    scorer = Scorer.load(args.model, registry=args.registry, allow_missing=args.allow_missing,
                         trust=args.trust_model)
    params = load_params_arg(args) if (args.crm or args.segment) and Path(args.params).exists() else None
    options = BatchOptions(
        reasons=args.reasons, chunk_size=args.chunk_size, since_days=args.since, segment=args.segment,
        segment_column=args.segment_column or (params.segments.column if params else None),
        incremental=args.incremental, refresh_all=args.refresh_all, on_bad_row=args.on_bad_row,
        progress=not args.quiet, experiment=args.experiment)
    source: Source
    shadow = None
    if args.engine == "dask" and args.experiment:
        raise ConfigError("--experiment works with --engine pandas (each chunk's exposures are recorded "
                          "before its scores are written)")
    if args.engine == "dask":
        from leadscore.scoring.dask_engine import score_parquet_dask

        summary = score_parquet_dask(scorer, args.input, args.output, options, scheduler=args.scheduler)
        challenger = None if args.no_shadow or args.model else _challenger(args)
        if challenger is not None and challenger != scorer.version:
            print(f"  note: challenger {challenger} was not shadow-scored (the dask engine does not log "
                  "scores); run with --engine pandas to log both versions for `models promote`",
                  file=sys.stderr)
    else:
        if args.crm:
            source = crm_source(args.crm, load_params_arg(args), as_of=args.as_of, mapping=args.crm_map)
        elif args.input:
            source = open_source(args.input, query=args.query, order_by=scorer.schema.id_column)
        else:
            raise ConfigError("give --input FILE|URL or --crm DIR")
        hooks: list[Any] = [_experiment_hook(args, scorer)] if args.experiment else []
        shadow = None if args.no_shadow or args.model else _shadow_hook(args, scorer)
        hooks += [shadow] if shadow is not None else []
        summary = run_batch(scorer, source, open_sink(args.output, table=args.table), options, hooks=hooks)
    print(f"scored {summary.rows_scored:,} of {summary.rows_in:,} leads with model {scorer.version} -> "
          f"{safe_url(args.output)} in {summary.seconds:.1f} s ({summary.rows_per_second:,.0f} leads/s)")
    if shadow is not None:
        print(f"  challenger {shadow.challenger.version} scored the same {shadow.logged['challenger']:,} "
              f"leads (shadow): both versions' scores are in the prediction log of "
              f"{safe_url(str(shadow.engine.url))}, not in the output; `leadscore models promote` compares "
              "them once labels mature")
    notes = {"filtered out": summary.rows_filtered, "already scored": summary.rows_already_scored,
             "chunk(s) resumed from an earlier run": summary.chunks_resumed}
    if any(notes.values()):
        print("  " + "; ".join(f"{n:,} {what}" for what, n in notes.items() if n))
    if summary.rows_bad:
        first = summary.errors[0]
        print(f"  {summary.rows_bad:,} bad row(s) skipped, e.g. lead {first['lead_id']}: {first['reason']} "
              "(all in the run record)", file=sys.stderr)


def _challenger(args: argparse.Namespace) -> str | None:
    """The registry's challenger version, if one is marked."""
    from leadscore.artifacts.registry import Registry

    return Registry(args.registry or Registry.default_root()).challenger_version()


def _shadow_hook(args: argparse.Namespace, scorer: Any) -> BatchShadow | None:
    """Shadow scoring with the registry's challenger when the run scores with the active version (as the
    API does): None without a challenger."""
    from leadscore.artifacts.paths import default_store_url
    from leadscore.artifacts.registry import Registry
    from leadscore.lifecycle.shadow import BatchShadow
    from leadscore.monitoring.predlog import open_database
    from leadscore.scoring.scorer import Scorer

    registry = Registry(args.registry or Registry.default_root())
    challenger = _challenger(args)
    if challenger is None or challenger == scorer.version:
        return None
    url = args.db or default_store_url(registry.root)
    engine, table, _ = open_database(url, LOG_TABLE, OUTCOMES_TABLE)
    return BatchShadow(Scorer(registry.load(challenger), challenger, allow_missing=True), engine, table)


def _experiment_hook(args: argparse.Namespace, scorer: Any) -> ExperimentHook:
    """The hook of a run inside experiment ``--experiment`` (the arms' models from the registry)."""
    from leadscore.cli.experiments import open_experiments
    from leadscore.experiments.arms import ArmScorers, ExperimentHook
    from leadscore.scoring.scorer import Scorer

    if not scorer.schema.id_column:
        raise ConfigError("--experiment needs lead ids (a model fitted with --id): arms are assigned by id")
    store = open_experiments(args)
    experiment = store.running(args.experiment)
    arms = ArmScorers.load(experiment, lambda version: Scorer.load(version, registry=args.registry))
    return ExperimentHook(store, experiment, arms)


def add_score_command(commands: argparse._SubParsersAction) -> None:
    """Add ``leadscore score`` to ``commands``."""
    p = add_command(commands, "score", _cmd_score, "score leads from a file, a database or the CRM tables",
             "Score leads with a registered model (default: the active version) or a model folder.\n"
             "Every lead gets: lead_id, probability (calibrated), score (0-100), tier, action,\n"
             "confidence (0-1: member agreement x filled usual fields), reasons (JSON: the top K\n"
             "positive and negative contributions in score points, in plain words), model_version and\n"
             "scored_at (UTC).\n\n"
             "Input: a CSV/TSV/Parquet/XLSX file with one row per lead, a database (SQLAlchemy URL or\n"
             ".db/.sqlite file, with --query TABLE or --query 'SELECT ...'), or --crm DIR|URL: the CRM\n"
             "tables (leads/activities/outcomes) as files or in a database read through --crm-map,\n"
             "from which leads without an outcome are snapshotted as of --as-of (default: the end of\n"
             "the data) with the training feature code.\n"
             "Output: .csv/.parquet (written only when complete) or a database table (upsert keyed\n"
             "by lead_id and model_version, one transaction per chunk, plus a run record in\n"
             "TABLE_runs). A run that stopped resumes where it stopped when run again.\n"
             "Bad rows (no id, duplicated id, a number that is not a number or not finite) are\n"
             "reported with their id and skipped, or stop the run with --on-bad-row fail.\n\n"
             "examples:\n"
             "  leadscore score --input new_leads.csv --output scores.parquet\n"
             "  leadscore score --crm data/raw --output sqlite:///scores.db --since 30 --reasons 3\n"
             "  leadscore score --crm postgresql+psycopg://u@host/crm --crm-map mapping.yaml \\\n"
             "                  --output scores.parquet\n"
             "  leadscore score --input postgresql+psycopg://u@host/crm --query leads \\\n"
             "                  --output postgresql+psycopg://u@host/crm --incremental\n"
             "  leadscore score --engine dask --input leads_parquet/ --output scores_parquet/")
    p.add_argument("--model", metavar="DIR|VERSION",
                   help="model folder (from fit/export) or registry version (default: the active one)")
    p.add_argument("--registry", metavar="PATH",
                   help="model registry (default: $LEADSCORE_REGISTRY or ./registry)")
    p.add_argument("--input", metavar="FILE|URL", help="leads to score: a file or a database")
    p.add_argument("--query", metavar="TABLE|SQL", help="table or SELECT for a database --input")
    p.add_argument("--crm", metavar="DIR|URL",
                   help="score open leads from the CRM tables in DIR, or in a CRM database (URL or .db file)")
    p.add_argument("--crm-map", metavar="FILE", help=f"with a CRM database: the {CRM_MAP_HELP}")
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
    p.add_argument("--trust-model", action="store_true",
                   help="load a model folder that is unsigned or signed with another machine's key "
                        "(only for models you made yourself: loading a model runs its code)")
    p.add_argument("--experiment", metavar="NAME",
                   help="a running experiment: each lead gets its arm (recorded in --db's exposure log "
                        "before its chunk is written) and file outputs gain experiment, arm, arm_score, "
                        "arm_probability and arm_tier columns (rank by arm_score)")
    p.add_argument("--db", metavar="URL",
                   help="the store: with --experiment, the one holding it; with a challenger in the "
                        "registry, where both versions' scores are logged (default: predictions.db beside "
                        "the registry)")
    p.add_argument("--no-shadow", action="store_true",
                   help="do not score with the registry's challenger (by default a run with the active "
                        "version also scores every lead with the challenger and logs both, as the API "
                        "does; the output holds the active version's scores only)")
    p.add_argument("--chunk-size", type=int, default=50_000, help="leads per chunk/commit (default: 50000)")
    p.add_argument("--engine", choices=["pandas", "dask"], default="pandas",
                   help="dask: score partitioned Parquet on a Dask cluster (default: %(default)s)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="with --engine dask: scheduler address (default: a LocalCluster on this machine)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_params_option(p)
