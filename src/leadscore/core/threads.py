"""How many threads a model may use on this machine, decided when it is built or loaded."""

from __future__ import annotations

import os

from leadscore.core.exceptions import ConfigError

ENV_THREADS = "LEADSCORE_THREADS"


def n_threads() -> int:
    """``$LEADSCORE_THREADS`` if set, else the CPUs this process may run on.

    Read at call time, so a saved model never carries the thread count of the machine it was
    trained on: :func:`leadscore.artifacts.bundle.load_bundle` applies this value to every member.
    """
    value = os.environ.get(ENV_THREADS, "").strip()
    if value:
        try:
            threads = int(value)
        except ValueError:
            threads = 0
        if threads < 1:
            raise ConfigError(f"{ENV_THREADS}: expected an integer >= 1, got {value!r}")
        return threads
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)
