"""``leadscore <command>``: thin handlers over the package; errors become one line and exit code 2."""

from leadscore.cli.main import main

__all__ = ["main"]
