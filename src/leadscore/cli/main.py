"""``leadscore <command>``: builds the parser from each command module and turns errors into one line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from leadscore import __version__
from leadscore.cli.experiments import add_experiments_command
from leadscore.cli.fit import add_fit_command
from leadscore.cli.models import add_models_command
from leadscore.cli.monitor import add_monitor_commands
from leadscore.cli.pipeline import add_demo_command, add_stage_commands
from leadscore.cli.report import add_report_command
from leadscore.cli.retrain import add_retrain_command
from leadscore.cli.score import add_score_command
from leadscore.cli.serve import add_serve_command
from leadscore.cli.sync import add_sync_command
from leadscore.core.exceptions import LeadscoreError

log = logging.getLogger("leadscore")

EPILOG = "Run `leadscore COMMAND --help` for the options of one command."
COMMANDS = (add_demo_command, add_stage_commands, add_fit_command, add_score_command, add_models_command,
            add_serve_command, add_report_command, add_monitor_commands, add_retrain_command,
            add_experiments_command, add_sync_command)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leadscore", epilog=EPILOG,
        description="Lead scoring from CRM history: calibrated conversion probabilities and scores.")
    parser.add_argument("--version", action="version", version=f"leadscore {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=max(logging.DEBUG, logging.WARNING - 10 * args.verbose),
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        status = args.func(args)
    except LeadscoreError as exc:
        print(f"leadscore {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the file system said no (a file where a folder belongs, permissions, disk full)
        where = f": {exc.filename}" if exc.filename else ""
        print(f"leadscore {args.command}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("leadscore: interrupted", file=sys.stderr)
        return 130
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())
