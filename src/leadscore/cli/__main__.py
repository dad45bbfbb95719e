"""``python -m leadscore.cli``: the same as the ``leadscore`` console script."""

import sys

from leadscore.cli.main import main

sys.exit(main())
