"""The monitoring store and the model the monitoring commands judge scores by: options and lookups
shared by ``leadscore outcomes``, ``leadscore monitor`` and its ``replay``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from leadscore.artifacts.paths import LOG_TABLE

if TYPE_CHECKING:
    import sqlalchemy as sa

STORE_HELP = "the store (default: SQLite predictions.db beside the registry, where `serve` logs scores)"


def open_store(args: argparse.Namespace) -> tuple[sa.Engine, sa.Table, sa.Table]:
    """The engine, prediction-log table and outcomes table of ``--db`` (default: beside the registry)."""
    from leadscore.artifacts.paths import default_store_url
    from leadscore.artifacts.registry import Registry
    from leadscore.monitoring.predlog import open_database

    url = args.db or default_store_url(Path(args.registry) if args.registry else Registry.default_root())
    return open_database(url, args.log_table, args.outcomes_table)


def model_metadata(args: argparse.Namespace, version: str) -> dict[str, Any]:
    """The metadata of ``--model`` or of ``version`` in the registry ({} when the registry lacks it)."""
    from leadscore.artifacts.metadata import read_metadata
    from leadscore.artifacts.registry import Registry
    from leadscore.core.exceptions import ModelNotFoundError

    if args.model:
        return dict(read_metadata(args.model))
    registry = Registry(Path(args.registry) if args.registry else Registry.default_root())
    try:
        return dict(registry.show(version))
    except ModelNotFoundError:  # pruned, or scored from another registry: params.yaml's window applies
        return {}


def model_bundle(args: argparse.Namespace, version: str | None) -> Any:
    """The bundle of ``--model``, else of ``version`` (default: active) in the registry."""
    from leadscore.artifacts.bundle import load_bundle
    from leadscore.artifacts.registry import Registry
    from leadscore.core.exceptions import ConfigError

    if args.model:
        return load_bundle(args.model, trust=True)
    registry = Registry(Path(args.registry) if args.registry else Registry.default_root())
    version = version or registry.active_version()
    if version is None:
        raise ConfigError(f"{registry.root}/ has no active model: give --version or --model")
    return registry.load(version)


def add_store_options(p: argparse.ArgumentParser) -> None:
    """--db, --registry, --log-table, --outcomes-table, --model and --json."""
    p.add_argument("--db", metavar="URL", help=STORE_HELP)
    p.add_argument("--registry", metavar="PATH",
                   help="model registry (default: $LEADSCORE_REGISTRY or registry)")
    p.add_argument("--log-table", default=LOG_TABLE, metavar="NAME",
                   help="prediction log table (default: %(default)s, where `serve` writes)")
    p.add_argument("--outcomes-table", default="outcomes", metavar="NAME", help="outcomes table")
    p.add_argument("--model", metavar="DIR",
                   help="model folder to judge the scores by, instead of their registry versions")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout, for scripts")
