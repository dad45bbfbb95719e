"""What every ``leadscore`` subcommand shares: how it is added to the parser and reads params.yaml."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from leadscore.core.config import Params

Handler = Callable[[argparse.Namespace], int | None]  # the exit status; None is 0


def load_params_arg(args: argparse.Namespace) -> Params:
    """``--params`` read into :class:`~leadscore.core.config.Params` (imported late: keeps --help fast)."""
    from leadscore.core.config import load_params

    return load_params(args.params)


def load_params_or_defaults(args: argparse.Namespace) -> Params:
    """``--params`` if given or present, else the package defaults (commands that run outside the
    project folder, such as monitoring on a serving machine)."""
    from pathlib import Path

    from leadscore.core.config import Params

    if args.params == "params.yaml" and not Path(args.params).exists():
        return Params()
    return load_params_arg(args)


def add_command(commands: argparse._SubParsersAction, name: str, handler: Handler, summary: str,
                description: str) -> argparse.ArgumentParser:
    """A subcommand parser whose ``--help`` keeps the description's line breaks."""
    parser = commands.add_parser(name, help=summary, description=description,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(func=handler)
    return parser


CRM_MAP_HELP = ("mapping of the CRM database's tables and columns (YAML, docs/crm.md; default: the demo "
                "schema that `leadscore demo --db` writes)")


def add_crm_options(group: argparse._ActionsContainer, *, crm_help: str, required: bool = False,
                    as_of: str = "--as-of") -> None:
    """``--crm URL``, ``--crm-map FILE``, the fixed scoring instant (``as_of``) and ``--scores-table``:
    what the commands that score leads where they live share (serve, sync)."""
    group.add_argument("--crm", required=required, metavar="URL", help=crm_help)
    group.add_argument("--crm-map", metavar="FILE", help=CRM_MAP_HELP)
    group.add_argument(as_of, metavar="TIME",
                       help="score as of this fixed instant (ISO 8601, UTC) instead of now: for a CRM whose "
                            "history ended in the past, such as the demo's")
    group.add_argument("--scores-table", default="lead_scores", metavar="TABLE",
                       help="the CRM's current-score table (default: %(default)s)")


def add_params_option(parser: argparse.ArgumentParser) -> None:
    """``--params FILE`` (default ``params.yaml``)."""
    parser.add_argument("--params", default="params.yaml", metavar="FILE",
                        help="settings file (default: %(default)s)")
