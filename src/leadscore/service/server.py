"""Run the service under uvicorn with one or more worker processes (what ``leadscore serve`` does).

Before the workers start, the parent checks the keys file, creates the prediction-log tables, makes a
state folder shared by the workers (rate-limit buckets, Prometheus multiprocess files) and hands the
settings to the workers through ``$LEADSCORE_SERVICE_SETTINGS``.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
from dataclasses import replace
from pathlib import Path

from leadscore.core.exceptions import ConfigError
from leadscore.service.orphan import SUPERVISOR_ENV
from leadscore.service.settings import ENV_SETTINGS, ServiceSettings

log = logging.getLogger(__name__)

APP = "leadscore.service.app:create_app_from_env"
GRACEFUL_SECONDS = 30  # on SIGTERM, requests still running after this long are cancelled (not answered)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def _reset_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):  # values of a previous run would be added to this one's
        stale.unlink()


def prepare_environment(settings: ServiceSettings, workers: int) -> tuple[ServiceSettings, Path | None]:
    """Check settings, create the log tables and the shared state folder, export the worker environment.

    Returns the settings the workers get and the temporary folder to remove afterwards (or None).
    """
    from leadscore.monitoring.predlog import open_database
    from leadscore.service.auth import KeyStore

    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"--workers: expected an integer >= 1, got {workers!r}")
    if settings.keys_file is None:
        raise ConfigError("the service needs an API keys file (--keys FILE or $LEADSCORE_API_KEYS); "
                          "create a key with `leadscore serve --new-key NAME`")
    KeyStore.from_file(settings.keys_file)
    engine, _, _ = open_database(settings.prediction_log_url, settings.log_table, settings.outcomes_table)
    engine.dispose()
    created: Path | None = None
    if workers > 1:
        if settings.state_dir is None:
            created = Path(tempfile.mkdtemp(prefix="leadscore-serve-"))
            settings = replace(settings, state_dir=created)
        assert settings.state_dir is not None
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        metrics_dir = Path(os.environ.get(MULTIPROC_ENV) or settings.state_dir / "metrics")
        _reset_dir(metrics_dir)
        os.environ[MULTIPROC_ENV] = str(metrics_dir)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads must not spin
    os.environ.setdefault("OMP_NUM_THREADS", "1")        # one lead at a time: no thread team to wake
    os.environ[ENV_SETTINGS] = settings.to_json()
    return settings, created


def run(settings: ServiceSettings, *, host: str = "127.0.0.1", port: int = 8000, workers: int = 2,
        log_level: str = "info", access_log: bool = True) -> None:
    """Serve until SIGINT/SIGTERM; shutdown is graceful (in-flight requests finish, the log is flushed).

    Raises
    ------
    ConfigError
        If the keys file is missing or invalid, or ``workers`` < 1.
    StoreError
        If the prediction-log database cannot be reached.
    """
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    settings, created = prepare_environment(settings, workers)
    try:
        log.info("serving %s on http://%s:%d with %d worker(s)", settings.registry, host, port, workers)
        if workers == 1:
            uvicorn.run(APP, factory=True, host=host, port=port, log_level=log_level, access_log=access_log,
                        timeout_graceful_shutdown=GRACEFUL_SECONDS)
            return
        config = uvicorn.Config(APP, factory=True, host=host, port=port, workers=workers, log_level=log_level,
                                access_log=access_log, timeout_graceful_shutdown=GRACEFUL_SECONDS)
        sock = config.bind_socket()
        # uvicorn creates the workers' shared socket with protocol 0, so asyncio does not set TCP_NODELAY on
        # the connections they accept, and a response written in two parts waits for the client's delayed
        # ACK (~40 ms). Accepted connections inherit the option from the listening socket.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        os.environ[SUPERVISOR_ENV] = str(os.getpid())  # workers exit if this process dies
        Multiprocess(config, sockets=[sock]).run()
    finally:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
