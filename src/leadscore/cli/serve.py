"""``leadscore serve``: the real-time scoring API and the dashboard (uvicorn), and helpers to make API keys.

Wire it into the main parser with ``add_serve_command(commands)``; handlers raise
:class:`~leadscore.core.exceptions.LeadscoreError` subclasses, which ``leadscore.cli.main.main``
prints as one line.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path
from typing import Literal

from leadscore.artifacts.paths import LOG_TABLE
from leadscore.cli.common import add_crm_options

ENV_KEYS = "LEADSCORE_API_KEYS"
DESCRIPTION = """\
Serve the registry's active model over HTTP (OpenAPI docs at /docs): POST /v1/score and
/v1/score/batch, model info and admin switches under /v1/model, POST /v1/outcomes, /health, /ready
and /metrics. Clients send an API key in the X-API-Key header; the keys file holds only hashes.
Workers follow the registry's active version, so `leadscore models activate` reaches a running
server. Every scored lead goes to the prediction log (SQLite next to the registry by default).

The ML insights dashboard is at /dashboard (sign in with an API key; admin keys may activate, roll
back and, with --train-crm, train). Each worker computes its heavy panels in the background, so the
page opens at once; --no-warm-dashboard computes them only when asked.

make a key:   leadscore serve --new-key crm-sync --role scorer --keys keys.yaml
hash a key:   echo "$KEY" | leadscore serve --hash-key
serve:        leadscore serve --keys keys.yaml --registry registry --port 8000
dashboard:    open http://127.0.0.1:8000/dashboard and paste a key
"""


def _read_key() -> str:
    if sys.stdin.isatty():
        return getpass.getpass("API key: ")
    return sys.stdin.readline().rstrip("\r\n")


def _new_key(args: argparse.Namespace, method: Literal["sha256", "scrypt"]) -> None:
    """A random key, shown once on stderr; its hashed entry appended to ``--keys`` or printed on stdout."""
    from leadscore.service.auth import generate_key, hash_key

    key = generate_key()
    entry = f"  - name: {args.new_key}\n    role: {args.role}\n    hash: {hash_key(key, method)}\n"
    print(f"API key for {args.new_key} (shown once; give it to the client, it is not stored): {key}",
          file=sys.stderr)
    keys = args.keys or os.environ.get(ENV_KEYS)
    if not keys:
        print(entry, end="")  # only the entry: `>> keys.yaml` never writes the key itself
        return
    from leadscore.core.files import private_file

    path = private_file(keys)  # created 0600 before the first entry is written
    fresh = path.stat().st_size == 0
    with path.open("a", encoding="utf-8") as handle:
        handle.write(("keys:\n" if fresh else "") + entry)
    print(f"added {args.new_key} ({args.role}) to {path}", file=sys.stderr)


def _cmd_serve(args: argparse.Namespace) -> None:
    from leadscore.service.auth import hash_key

    method: Literal["sha256", "scrypt"] = "scrypt" if args.scrypt else "sha256"
    if args.hash_key:
        print(hash_key(_read_key(), method))
        return
    if args.new_key:
        _new_key(args, method)
        return
    from leadscore.artifacts.registry import Registry
    from leadscore.service.server import run
    from leadscore.service.settings import ServiceSettings

    keys = args.keys or os.environ.get(ENV_KEYS)
    settings = ServiceSettings(
        registry=Path(args.registry) if args.registry else Registry.default_root(),
        keys_file=Path(keys) if keys else None, batch_limit=args.batch_limit,
        max_body_bytes=args.max_body_bytes, rate_limit=args.rate_limit, rate_burst=args.rate_burst,
        log_url=args.log_db, log_table=args.log_table, poll_interval=args.poll_interval,
        journal_dir=Path(args.journal) if args.journal else None,
        train_crm=Path(args.train_crm) if args.train_crm else None,
        train_params=Path(args.train_params) if args.train_params else
        (Path("params.yaml") if Path("params.yaml").exists() else None),
        warm_dashboard=not args.no_warm_dashboard, crm_url=args.crm,
        crm_map=Path(args.crm_map) if args.crm_map else None, crm_as_of=args.crm_as_of,
        crm_scores_table=args.scores_table, crm_write_back=not args.no_write_back)
    run(settings, host=args.host, port=args.port, workers=args.workers, log_level=args.log_level,
        access_log=not args.no_access_log)


def add_serve_command(commands: argparse._SubParsersAction) -> None:
    """Add ``leadscore serve`` (and its ``--hash-key`` / ``--new-key`` helpers) to ``commands``."""
    p = commands.add_parser("serve", help="serve the active model over HTTP (FastAPI + uvicorn)",
                            description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=_cmd_serve)
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)")
    p.add_argument("--port", type=int, default=8000, help="(default: %(default)s)")
    p.add_argument("--workers", type=int, default=2, metavar="N",
                   help="worker processes (default: %(default)s)")
    p.add_argument("--registry", metavar="PATH",
                   help="registry folder (default: $LEADSCORE_REGISTRY, else registry)")
    p.add_argument("--keys", metavar="FILE",
                   help=f"YAML or JSON file of hashed API keys (default: ${ENV_KEYS})")
    p.add_argument("--log-db", metavar="URL",
                   help="prediction log database: SQLAlchemy URL or SQLite path "
                        "(default: predictions.db next to the registry folder)")
    p.add_argument("--log-table", default=LOG_TABLE, metavar="NAME",
                   help="prediction log table, optionally schema.table (default: %(default)s; outcomes go "
                        "to the table outcomes)")
    p.add_argument("--journal", metavar="DIR",
                   help="local folder every prediction is synced to before it is answered, shipped to the "
                        "log database in the background and replayed after a crash (default: "
                        "prediction-journal/<database>/ next to the registry folder)")
    p.add_argument("--batch-limit", type=int, default=1000, metavar="N",
                   help="most leads per batch request (default: %(default)s)")
    p.add_argument("--rate-limit", type=float, default=50.0, metavar="R",
                   help="requests per second per API key, shared by all workers; 0 = unlimited "
                        "(default: %(default)s)")
    p.add_argument("--rate-burst", type=float, metavar="N",
                   help="requests a key may send at once (default: one second's worth)")
    p.add_argument("--max-body-bytes", type=int, default=8 * 1024 * 1024, metavar="N",
                   help="larger request bodies get 413 (default: %(default)s)")
    p.add_argument("--poll-interval", type=float, default=0.5, metavar="S",
                   help="seconds between checks of the registry's active version (default: %(default)s)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                   help="uvicorn log level (default: %(default)s)")
    p.add_argument("--no-access-log", action="store_true", help="do not log one line per request")
    p.add_argument("--no-warm-dashboard", action="store_true",
                   help="compute the dashboard's heavy panels only when asked (default: in the background "
                        "at start, for each new model version and before a kept answer expires)")
    p.add_argument("--train-crm", metavar="DIR",
                   help="CRM tables that POST /v1/model/train retrains on (without it: 503)")
    p.add_argument("--train-params", metavar="FILE",
                   help="settings for those jobs (default: ./params.yaml if present, else built-in)")
    crm = p.add_argument_group("scoring by lead id from the CRM database (POST /v1/leads/{lead_id}/score)")
    add_crm_options(crm, as_of="--crm-as-of", crm_help="the CRM database to read leads from and write "
                    "scores back to (without it that endpoint answers 409)")
    crm.add_argument("--no-write-back", action="store_true",
                     help="score by id without writing to the CRM database")
    keys = p.add_argument_group("API keys (print and exit)")
    keys.add_argument("--hash-key", action="store_true",
                      help="read a key from stdin (or a prompt) and print its hash for the keys file")
    keys.add_argument("--new-key", metavar="NAME",
                      help="generate a random key for client NAME: the key is printed once (stderr) and "
                           "its hashed entry appended to --keys FILE (created with a keys: header), or "
                           "printed on stdout without --keys")
    keys.add_argument("--role", choices=["scorer", "admin"], default="scorer",
                      help="role of the --new-key entry (default: %(default)s)")
    keys.add_argument("--scrypt", action="store_true",
                      help="hash with salted scrypt instead of sha256 (for keys people chose)")
