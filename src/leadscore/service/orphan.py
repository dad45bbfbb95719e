"""Worker processes stop when their supervisor dies.

uvicorn's supervisor starts the workers; if it is killed with SIGKILL (OOM killer, ``kill -9``) the
workers would go on serving with nobody to restart or stop them, and a new ``leadscore serve`` would find
the port taken. :func:`watch_parent` polls the parent process id: once the worker has been re-parented,
it sends itself SIGTERM, which shuts it down gracefully (in-flight requests finish, the log is flushed).
"""

from __future__ import annotations

import logging
import os
import signal
import threading

log = logging.getLogger(__name__)

SUPERVISOR_ENV = "LEADSCORE_SUPERVISOR_PID"
POLL_SECONDS = 0.5


def watch_parent(poll: float = POLL_SECONDS) -> threading.Thread | None:
    """Start the watchdog in a worker whose supervisor exported ``$LEADSCORE_SUPERVISOR_PID``.

    Returns the daemon thread, or None when this process is not a supervised worker.
    """
    expected = os.environ.get(SUPERVISOR_ENV, "")
    if not expected.isdigit() or int(expected) == os.getpid():
        return None
    supervisor = int(expected)

    def watch() -> None:
        while os.getppid() == supervisor:
            threading.Event().wait(poll)
        log.warning("supervisor %d is gone: worker %d shuts down", supervisor, os.getpid())
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, name="leadscore-parent-watch", daemon=True)
    thread.start()
    return thread
